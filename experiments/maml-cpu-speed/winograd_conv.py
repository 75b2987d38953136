"""Prototype: Winograd F(2x2, 3x3) for the 14x14, 64-channel convolution that carries ~70% of a MAML task's FLOPs.

16 batched 64x64 products replace the 3x3 convolution (2.25x fewer multiplications); the tile transforms are
element-wise torch ops, and autograd differentiates the whole thing (so it would serve the double backward too).
One thread, 75 images (a 5-way, 15-query set). Run: python experiments/maml-cpu-speed/winograd_conv.py
"""
import time

import torch
import torch.nn.functional as F


def _t_in(d0, d1, d2, d3):
    # B^T rows: [1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3

def winograd_conv3x3(x, w):
    """x: [N, C, H, W] (H, W even), w: [K, C, 3, 3]; stride 1, padding 1. Returns channels-last NCHW."""
    n, c, h, wd = x.shape
    k = w.shape[0]
    th, tw = h // 2, wd // 2
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # NHWC padded [N, H+2, W+2, C]
    rows = [xp[:, a:a + 2 * th - 1:2] for a in range(4)]   # [N, th, W+2, C]
    out = []
    for r in _t_in(*rows):
        cols = [r[:, :, b:b + 2 * tw - 1:2] for b in range(4)]  # [N, th, tw, C]
        out.extend(_t_in(*cols))
    V = torch.stack(out).reshape(16, n * th * tw, c)
    # weight: U = G g G^T, G = [[1,0,0],[.5,.5,.5],[.5,-.5,.5],[0,0,1]]
    G = w.new_tensor([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
    U = torch.einsum("ai,kcij,bj->abck", G, w, G).reshape(16, c, k)
    M = torch.bmm(V, U).view(4, 4, n, th, tw, k)
    # A^T = [[1,1,1,0],[0,1,-1,-1]] on both tile axes
    r0 = M[0] + M[1] + M[2]
    r1 = M[1] - M[2] - M[3]
    y = []
    for r in (r0, r1):
        y.append(torch.stack((r[0] + r[1] + r[2], r[1] - r[2] - r[3]), dim=3))  # [N, th, tw, 2, K]
    y = torch.stack(y, dim=2)  # [N, th, 2, tw, 2, K]
    return y.reshape(n, h, wd, k).permute(0, 3, 1, 2)

if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(75, 64, 14, 14).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3) * 0.05
    ref = F.conv2d(x, w, padding=1)
    got = winograd_conv3x3(x, w)
    print("max err", (ref - got).abs().max().item(), ref.abs().max().item())
    def bench(fn, reps=20):
        for _ in range(3):
            fn()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t) / reps * 1e3
    print("fwd conv2d ms", bench(lambda: F.conv2d(x, w, padding=1)))
    print("fwd wino   ms", bench(lambda: winograd_conv3x3(x, w)))
    xg = x.clone().requires_grad_()
    wg = w.clone().requires_grad_()
    go = torch.randn(75, 64, 14, 14).contiguous(memory_format=torch.channels_last)
    def fb(f):
        def run():
            y = f(xg, wg)
            torch.autograd.grad(y, (xg, wg), go)
        return run
    print("fwd+bwd conv2d ms", bench(fb(lambda a, b: F.conv2d(a, b, padding=1))))
    print("fwd+bwd wino   ms", bench(fb(winograd_conv3x3)))
    gr = torch.autograd.grad(F.conv2d(xg, wg, padding=1), (xg, wg), go)
    gw = torch.autograd.grad(winograd_conv3x3(xg, wg), (xg, wg), go)
    print("grad errs", [(a - b).abs().max().item() / a.abs().max().item() for a, b in zip(gr, gw)])
