#!/usr/bin/env bash
# Debian packages the tests use beyond Python, each installed only when missing:
#   chromium                   the leaderboard site's browser test (tests/test_leaderboard_site.py)
#   postgresql                 the server tests/test_db.py starts in a temporary folder
#   texlive-latex-base         pdflatex: the figures' .tex tables must compile (tests/test_figures.py)
#   texlive-latex-recommended  booktabs
#   poppler-utils              pdffonts: paper PDFs must embed their fonts
#
# Usage: bash .ci/system-packages.sh      (as root, or with passwordless sudo; .ci/run calls it before tox)
#
# Idempotent and quick when everything is there (no apt-get update then). Never fails CI: where apt is missing,
# we are not root, or the install fails, it says why and exits 0 — the tests that need a package then skip
# with the reason.
set -u

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v pdflatex >/dev/null 2>&1 || missing+=(texlive-latex-base)
{ command -v kpsewhich >/dev/null 2>&1 && kpsewhich booktabs.sty >/dev/null 2>&1; } || missing+=(texlive-latex-recommended)
command -v pdffonts >/dev/null 2>&1 || missing+=(poppler-utils)

if [ ${#missing[@]} -eq 0 ]; then
    echo "system-packages: chromium, postgresql, pdflatex with booktabs and pdffonts are installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: no apt-get here; not installing ${missing[*]} (the tests that need them will skip)"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    else
        echo "system-packages: not root and no passwordless sudo; not installing ${missing[*]} (those tests will skip)"
        exit 0
    fi
fi

echo "system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get update -qq; then
    echo "system-packages: apt-get update failed; not installing ${missing[*]} (those tests will skip)"
    exit 0
fi
# --no-install-recommends: the tests need the programs, not ~1 GB of documentation, fonts and a desktop
if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "system-packages: apt-get install ${missing[*]} failed (those tests will skip)"
    exit 0
fi
echo "system-packages: installed ${missing[*]}"
exit 0
