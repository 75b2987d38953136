/* The first layer of a Conv-4 on a CPU: 3x3 convolution (padding 1) with batch norm folded into its weights, 2x2
 * max-pooling and ReLU, without ever writing the full-resolution activations to memory.
 *
 * Loaded by algorithms/native.py (compiled on first use; see there for why). Pure functions of their arguments,
 * no global state, so worker threads can call them side by side. Compiled once per element type: REAL is float
 * (the default) or double, IREAL the signed integer of the same width. Contiguous arrays:
 *   x       [n, cin, h, w]        input images
 *   a       [k + 1, c]            folded weights, k = 9 * cin, in F.unfold's patch order; the last row is the bias;
 *                                 c a multiple of LANES
 *   pooled  [n, h / 2, w / 2, c]  ReLU of the max over each 2x2 window of the folded convolution (channels last;
 *                                 ReLU after pooling equals pooling after ReLU, ReLU being monotone)
 *   arg     [n, h / 2, w / 2, c]  which of the window's four positions won: 0..3 in row-major order, the first on ties
 *                                 (as torch's max_pool2d); CLIPPED where the ReLU cut the maximum to 0 (no gradient,
 *                                 as torch's ReLU at 0)
 * Three maps: the forward (pooled, arg), the weight gradient (the pooled gradient sent back to the winning patch
 * of each window and channel), and its adjoint (the forward with the winners held fixed), which is what a second
 * derivative through the weight gradient needs.
 *
 * Each 2x2 window reads one 4x4 neighbourhood of the (zero-padded) image; the four 3x3 patches are its four
 * corners. Channels are processed LANES at a time with the four positions' sums side by side, so each weight is
 * loaded once per window and the compiler can keep the sums in vector registers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef REAL
#define REAL float
#define IREAL int32_t
#endif
#define LANES 16

/* GCC/Clang vector extensions: LANES numbers (or integer masks of the same width) at a time, any alignment; the
 * compiler maps them onto whatever vector unit the machine has (-march=native), which plain loops over the lanes
 * did not reliably get. */
typedef REAL vf __attribute__((vector_size(sizeof(REAL) * LANES), aligned(sizeof(REAL))));
typedef IREAL vi __attribute__((vector_size(sizeof(REAL) * LANES), aligned(sizeof(REAL))));
typedef uint8_t vb __attribute__((vector_size(LANES), aligned(1)));
#define MAX_K 27   /* 3 input channels x 9 */
#define CLIPPED 4

/* the four patches of the window at pooled position (i, j): patch[o][ci * 9 + u * 3 + v] */
static void window_patches(const REAL *padded, int cin, int h, int w, int i, int j, REAL patch[4][MAX_K]) {
    int pw = w + 2;
    for (int ci = 0; ci < cin; ci++) {
        const REAL *top = padded + ((int64_t)ci * (h + 2) + 2 * i) * pw + 2 * j;
        for (int o = 0; o < 4; o++) {
            const REAL *corner = top + (o >> 1) * pw + (o & 1);
            for (int u = 0; u < 3; u++)
                for (int v = 0; v < 3; v++) patch[o][ci * 9 + u * 3 + v] = corner[u * pw + v];
        }
    }
}

/* the image with a border of zeros, so every patch is plain loads */
static void pad_image(const REAL *img, int cin, int h, int w, REAL *padded) {
    int pw = w + 2;
    memset(padded, 0, sizeof(REAL) * (size_t)cin * (h + 2) * pw);
    for (int ci = 0; ci < cin; ci++)
        for (int y = 0; y < h; y++)
            memcpy(padded + ((int64_t)ci * (h + 2) + y + 1) * pw + 1, img + ((int64_t)ci * h + y) * w,
                   sizeof(REAL) * (size_t)w);
}

static inline vf load(const REAL *p) { return *(const vf *)p; }
static inline void store(REAL *p, vf v) { *(vf *)p = v; }
static inline vi load_arg(const uint8_t *p) { return __builtin_convertvector(*(const vb *)p, vi); }
static inline vf blend(vi mask, vf yes, vf no) { return (vf)(((vi)yes & mask) | ((vi)no & ~mask)); }

/* sums[o] = bias + patch[o] . a[:, q:q + LANES], bias first, then in patch order */
static inline void four_products(REAL patch[4][MAX_K], const REAL *restrict a, int k, int c, int q, vf sums[4]) {
    vf s0 = load(a + (int64_t)k * c + q), s1 = s0, s2 = s0, s3 = s0;
    for (int r = 0; r < k; r++) {
        vf row = load(a + (int64_t)r * c + q);
        s0 += patch[0][r] * row;
        s1 += patch[1][r] * row;
        s2 += patch[2][r] * row;
        s3 += patch[3][r] * row;
    }
    sums[0] = s0, sums[1] = s1, sums[2] = s2, sums[3] = s3;
}

/* One image's share of the weight gradient, added to grad_a. With cin (and so k) a compile-time constant the
 * LANES-wide sums of all k + 1 rows stay in vector registers across the image's windows. */
static inline __attribute__((always_inline)) void weight_grad_image(
        const REAL *restrict padded, const uint8_t *restrict arg, const REAL *restrict grad, const int cin, int h,
        int w, int c, REAL *restrict patches, double *restrict grad_a) {
    const int k = 9 * cin;
    int windows = (h / 2) * (w / 2);
    for (int i = 0; i < h / 2; i++)  /* every window's four patches, once for all channel blocks */
        for (int j = 0; j < w / 2; j++)
            window_patches(padded, cin, h, w, i, j,
                           (REAL (*)[MAX_K])(patches + (int64_t)(i * (w / 2) + j) * 4 * MAX_K));
    for (int q = 0; q < c; q += LANES) {
        vf sums[MAX_K + 1];
        for (int r = 0; r <= k; r++) sums[r] = (vf){0};
        for (int window = 0; window < windows; window++) {
            const REAL *patch = patches + (int64_t)window * 4 * MAX_K;
            int64_t at = (int64_t)window * c + q;
            vf g = load(grad + at);
            vi won = load_arg(arg + at);
            /* the gradient of each channel, kept only at the position that won it (nowhere if CLIPPED) */
            vf g0 = (vf)((vi)g & (won == 0)), g1 = (vf)((vi)g & (won == 1));
            vf g2 = (vf)((vi)g & (won == 2)), g3 = (vf)((vi)g & (won == 3));
            for (int r = 0; r < k; r++)
                sums[r] += patch[r] * g0 + patch[MAX_K + r] * g1 + patch[2 * MAX_K + r] * g2
                           + patch[3 * MAX_K + r] * g3;
            sums[k] += (g0 + g1) + (g2 + g3);
        }
        for (int r = 0; r <= k; r++)
            for (int l = 0; l < LANES; l++) grad_a[(int64_t)r * c + q + l] += sums[r][l];
    }
}

/* grad_a[r, q] = sum over windows of grad[window, q] * (the winning patch of channel q)[r], bias row included.
 * Sums are kept per image in REAL and added up in double, so the rounding does not grow with the batch. */
int pooled_patch_weight_grad(const REAL *restrict x, int64_t n, int cin, int h, int w, const uint8_t *restrict arg,
                             const REAL *restrict grad, int c, double *restrict grad_a) {
    int ho = h / 2, wo = w / 2;
    REAL *padded = malloc(sizeof(REAL) * (size_t)cin * (h + 2) * (w + 2));
    REAL *patches = malloc(sizeof(REAL) * (size_t)ho * wo * 4 * MAX_K);
    if (!padded || !patches) { free(padded); free(patches); return 1; }
    memset(grad_a, 0, sizeof(double) * (size_t)(9 * cin + 1) * c);
    for (int64_t b = 0; b < n; b++) {
        pad_image(x + b * cin * h * w, cin, h, w, padded);
        const uint8_t *image_arg = arg + b * ho * wo * c;
        const REAL *image_grad = grad + b * ho * wo * c;
        if (cin == 1) weight_grad_image(padded, image_arg, image_grad, 1, h, w, c, patches, grad_a);
        else if (cin == 2) weight_grad_image(padded, image_arg, image_grad, 2, h, w, c, patches, grad_a);
        else weight_grad_image(padded, image_arg, image_grad, 3, h, w, c, patches, grad_a);
    }
    free(padded);
    free(patches);
    return 0;
}

/* Each window's four products with a[:, q:q + LANES], then either the ReLU of their maximum, recording the winner
 * (fixed_winners 0: the forward), or the product of the recorded winner, 0 where CLIPPED (fixed_winners 1: the
 * adjoint of the weight gradient). One loop for both, so they cannot drift apart. */
static int window_products(const REAL *restrict x, int64_t n, int cin, int h, int w, const REAL *restrict a, int c,
                           REAL *restrict out, uint8_t *restrict arg, int fixed_winners) {
    int k = 9 * cin, ho = h / 2, wo = w / 2;
    REAL *padded = malloc(sizeof(REAL) * (size_t)cin * (h + 2) * (w + 2));
    if (!padded) return 1;
    REAL patch[4][MAX_K];
    vf sums[4];
    for (int64_t b = 0; b < n; b++) {
        pad_image(x + b * cin * h * w, cin, h, w, padded);
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                int64_t at = ((b * ho + i) * wo + j) * c;
                window_patches(padded, cin, h, w, i, j, patch);
                for (int q = 0; q < c; q += LANES) {
                    four_products(patch, a, k, c, q, sums);
                    if (fixed_winners) {
                        vi won = load_arg(arg + at + q);
                        vf picked = blend(won == 1, sums[1], sums[0]);
                        picked = blend(won == 2, sums[2], picked);
                        picked = blend(won == 3, sums[3], picked);
                        store(out + at + q, (vf)((vi)picked & (won != CLIPPED)));
                        continue;
                    }
                    vf best = sums[0];
                    vi won = best != best;  /* all zero: position 0 */
                    for (int o = 1; o < 4; o++) {
                        vi better = sums[o] > best;  /* strictly: the first position wins a tie */
                        best = blend(better, sums[o], best);
                        won = (won & ~better) | (better & o);
                    }
                    vi positive = best > (REAL)0;
                    won = (won & positive) | (~positive & CLIPPED);
                    store(out + at + q, (vf)((vi)best & positive));
                    *(vb *)(arg + at + q) = __builtin_convertvector(won, vb);
                }
            }
    }
    free(padded);
    return 0;
}

int pooled_patch_forward(const REAL *restrict x, int64_t n, int cin, int h, int w, const REAL *restrict a, int c,
                         REAL *restrict pooled, uint8_t *restrict arg) {
    return window_products(x, n, cin, h, w, a, c, pooled, arg, 0);
}

/* out[window, q] = (the winning patch of channel q, with its bias 1) . bmat[:, q]: the adjoint of the weight
 * gradient (0 where CLIPPED) */
int pooled_patch_gather(const REAL *restrict x, int64_t n, int cin, int h, int w, const uint8_t *restrict arg,
                        const REAL *restrict bmat, int c, REAL *restrict out) {
    return window_products(x, n, cin, h, w, bmat, c, out, (uint8_t *)arg, 1);
}

/* Sums over all h x w positions of each patch entry and of each product of two entries (stride 1, zero padding):
 * the moments from which batch norm's statistics of the convolution follow. products[a * k + b] for a <= b (the
 * rest is left 0). Per image, entry e of every patch is the image shifted by e's offset; the sums are dot products
 * of those shifted copies, laid out contiguously so they run LANES positions at a time. */
int patch_moments(const REAL *restrict x, int64_t n, int cin, int h, int w, double *restrict sums,
                  double *restrict products) {
    int k = 9 * cin, pw = w + 2, positions = h * w;
    REAL *padded = malloc(sizeof(REAL) * (size_t)cin * (h + 2) * pw);
    REAL *shifted = malloc(sizeof(REAL) * (size_t)k * positions);
    if (!padded || !shifted) { free(padded); free(shifted); return 1; }
    memset(sums, 0, sizeof(double) * (size_t)k);
    memset(products, 0, sizeof(double) * (size_t)k * k);
    for (int64_t b = 0; b < n; b++) {
        pad_image(x + b * cin * h * w, cin, h, w, padded);
        for (int e = 0; e < k; e++) {
            const REAL *from = padded + ((int64_t)(e / 9) * (h + 2) + (e % 9) / 3) * pw + e % 3;
            for (int y = 0; y < h; y++)
                memcpy(shifted + (int64_t)e * positions + y * w, from + y * pw, sizeof(REAL) * w);
        }
        for (int e = 0; e < k; e++) {
            const REAL *p = shifted + (int64_t)e * positions;
            for (int f = e; f < k; f++) {
                const REAL *q = shifted + (int64_t)f * positions;
                vf dot = {0}, sum = {0};  /* sum of p, used for f == e only: the same pass over p */
                int z = 0;
                for (; z + LANES <= positions; z += LANES) {
                    vf u = load(p + z);
                    dot += u * load(q + z);
                    sum += u;
                }
                REAL dot_total = 0, sum_total = 0;
                for (; z < positions; z++) dot_total += p[z] * q[z], sum_total += p[z];
                for (int l = 0; l < LANES; l++) dot_total += dot[l], sum_total += sum[l];
                products[e * k + f] += dot_total;
                if (f == e) sums[e] += sum_total;
            }
        }
    }
    free(padded);
    free(shifted);
    return 0;
}
