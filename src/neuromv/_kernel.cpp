// The fused CPU kernel of neuromv.renderer (method 'kernel'): a block of 16 pixels goes through every layer of the
// abstract CPPN in registers and L1, with a cheap exact-enough tanh, so the matrix work runs near the FMA units'
// peak. Built at install time as the optional extension neuromv._kernel (plain C ABI, loaded with ctypes); when it
// is missing, the renderer falls back to its torch path.
//
// One build carries several paths, compiled from _kernel_body.h with different instruction sets, and the caller
// picks one that this CPU runs (neuromv_kernel_paths checks the CPU's features, and neuromv_render5 refuses a path
// it lacks, so no build can die of an illegal instruction):
//   path 0: portable (generic vectors; any CPU, ARM64 included), float32
//   path 1: AVX2 + FMA, float32                      (x86-64 only)
//   path 2: AVX-512 F/BW/DQ/VL, float32             (x86-64 only)
//   path 3: AVX-512 + VNNI, the reduced precision 'int16': activations in 16-bit fixed point (8191 for 1), 32 lanes
//           a register; the hidden and output layers' products summed exactly in int32 (vpdpwssd: two products a
//           lane per instruction); each hidden sum, shifted right by its row's shift, is the pre-activation x as
//           Z = round(6144 x) (int16, saturated), and tanh is a 64-segment quadratic in 16-bit arithmetic
//           (vpermt2w picks the coefficients, vpmulhuw multiplies), within one level of round(8191 tanh(x)).
//           Layer 1's sums (3 inputs) and the output layer's logits and colour work are float32.
// The base flags carry no -march: only the functions of paths 1-3 use the wider instructions. Non-x86 builds (and
// -DNEUROMV_PORTABLE_ONLY, which checks that) have path 0 alone: no x86 intrinsic is outside the x86 guard.
//
// Tiles are 8 columns x 2 rows of pixels (16 lanes: lane p is row p / 8, column p % 8), tile t at tile row
// t / tiles_per_row; partial tiles at the right and bottom edges are computed but not written.
// Layout: ct [n_tiles][3][16] holds the pixel coordinates (x, y, r) per tile; W0 [H][3] is layer 0's coordinate
// part and c0 [H] the frame's bias (layer 0's bias plus its z part); Ws [L][H][H] and bs [L][H] the
// hidden-to-hidden layers (row j = output j); Wo [3][H] and bo [3] the output layer. Path 3 (else unused): Wq, the
// int16 data as uint32: the hidden weights as int16 pairs [L][H][H / 2] (q[j][2p] in the low 16 bits, q[j][2p + 1]
// in the high), then the int32 biases B [L][H], then the shifts sh [L][H], then the output weights as pairs
// [3][H / 2]; unit j's pre-activation is Z = (B_j + sum_k q_jk a_k) >> sh_j with the activations a_k in 8191 for 1;
// Wd [3]: channel c's logit is its int32 sum times Wd[c] plus bo[c] (neuromv.renderer makes them and keeps every
// sum within int32).
// Colour (optional, nullptr for none): color [3][4] is an affine map A of RGB in [0, 1], c -> clamp(A[:, :3] c +
// A[:, 3], 0, 1), applied to each pixel's colour before it is written (9 FMAs and a clamp per 16 pixels; without
// it the kernel is compiled without the step, a template parameter).
// Palette (optional, nullptr for none; neuromv.renderer.color.PaletteMap.kernel_data): palette [4 + 3 n] holds a row
// (r0, r1, r2, r3) for colours in 0-255, then the R, G and B planes [n] of the table in 0-255; the last step of each
// pixel's colour, after the colour map and its clamp: pos = clamp(r0 R + r1 G + r2 B + r3, 0, n - 1), and the colour
// becomes (R[i], G[i], B[i]) of i = floor(pos + 0.5), then is written or turned into I420 as any colour. Each worker
// first rounds the table's colours to 8 bits and packs them into one word per entry (pack_palette), so that one
// gather gives a pixel's three channels (paths 2 and 3: 16 lanes a gather, path 1: 8, path 0: a load per pixel);
// RGB frames are the same as with the float planes, I420 frames are converted from the rounded colours. Compiled
// out without a palette, as the colour map.
// Output, mode 0 (RGB): out [height][width][3] gets round(255 * sigmoid(logit)). Mode 1 (I420, even sizes only):
// out holds the Y plane [height][width], then U and V [height / 2][width / 2]: BT.709, limited range, chroma the
// mean of each 2 x 2 block, as an encoder takes it, so no separate colour conversion is needed.
// Workers share the tiles through an atomic counter, in chunks, so a core that is also busy encoding takes fewer.
// Each pixel's value depends only on its own inputs and the path: not on the threads or the order of the tiles.
#include <stdint.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && !defined(NEUROMV_PORTABLE_ONLY)
#define NEUROMV_X86 1
#include <immintrin.h>
#endif

#include <math.h>

namespace {

// The int16 path's tanh (path 3, tanh16 in _kernel_body.h): for Z = 0..32767 (Z = 6144 x), segment Z >> 9 of 64
// holds a quadratic in t = Z mod 512: Y = c0 + hi(t' (c1 - hi(t' c2))) with t' = t << 7 and hi(a b) = a b >> 16
// (unsigned 16-bit), Y in units of 1/8 level, so that Y >> 3 = round(8191 tanh(Z / 6144)). Coefficients
// c0[64], c1[64], c2[64]: a least-squares fit per segment, rounded, with c0 then set so that the integer evaluation's
// errors over the segment are centred. Made once (a thread-safe static). x86-64 only, as path 3.
#ifdef NEUROMV_X86
struct Tanh16Table {
    uint16_t c[192];
    Tanh16Table() {
        for (int s = 0; s < 64; s++) {
            double m[3][4] = {};  // normal equations of Y ~ a + b u + c u^2, u = t / 512
            for (int t = 0; t < 512; t++) {
                const double u = t / 512.0, v[3] = {1.0, u, u * u};
                const double target = 8.0 * 8191.0 * tanh((512 * s + t) / 6144.0) + 4.0;
                for (int i = 0; i < 3; i++) {
                    for (int k = 0; k < 3; k++) m[i][k] += v[i] * v[k];
                    m[i][3] += v[i] * target;
                }
            }
            for (int i = 0; i < 3; i++)  // Gauss-Jordan (the matrix is positive definite)
                for (int r = 0; r < 3; r++) {
                    if (r == i) continue;
                    const double f = m[r][i] / m[i][i];
                    for (int k = 0; k < 4; k++) m[r][k] -= f * m[i][k];
                }
            const double a = m[0][3] / m[0][0], b = m[1][3] / m[1][1], q = m[2][3] / m[2][2];
            const long c1 = lround(b), c2 = q < 0 ? lround(-q) : 0;
            long lo = 1L << 30, hi = -(1L << 30);  // the integer evaluation's error range with c0 = 0
            for (int t = 0; t < 512; t++) {
                const long tt = (long)t << 7;
                const long y = (tt * (c1 - ((tt * c2) >> 16))) >> 16;
                const long e = y - lround(8.0 * 8191.0 * tanh((512 * s + t) / 6144.0) + 4.0);
                lo = e < lo ? e : lo;
                hi = e > hi ? e : hi;
            }
            (void)a;
            long c0 = -(lo + hi) / 2;
            c[s] = (uint16_t)(c0 < 0 ? 0 : c0 > 65535 ? 65535 : c0);
            c[64 + s] = (uint16_t)c1;
            c[128 + s] = (uint16_t)c2;
        }
    }
};

const uint16_t *tanh16_coefficients() {
    static const Tanh16Table table;
    return table.c;
}
#endif

// A palette's planes [3][n] (0-255 floats) -> its entries rounded to 8 bits and packed, R | G << 8 | B << 16 (the
// caller frees it with delete[]); rounded and clamped as a pixel's colour is when it is written.
uint32_t *pack_palette(const float *planes, long n) {
    uint32_t *packed = new uint32_t[n];
    for (long i = 0; i < n; i++) {
        uint32_t px = 0;
        for (int c = 0; c < 3; c++) {
            const float v = planes[c * n + i] + 0.5f;
            px |= (uint32_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v) << (8 * c);
        }
        packed[i] = px;
    }
    return packed;
}

}  // namespace

namespace portable {
#define NEUROMV_ISA 0
#include "_kernel_body.h"
#undef NEUROMV_ISA
}  // namespace portable

#ifdef NEUROMV_X86
#ifdef __clang__
#define NEUROMV_TARGET_BEGIN(t) _Pragma("clang attribute push(__attribute__((target(" #t "))), apply_to = function)")
#define NEUROMV_TARGET_END _Pragma("clang attribute pop")
#else
#define NEUROMV_PRAGMA(x) _Pragma(#x)
#define NEUROMV_TARGET_BEGIN(t) _Pragma("GCC push_options") NEUROMV_PRAGMA(GCC target(t))
#define NEUROMV_TARGET_END _Pragma("GCC pop_options")
#endif

NEUROMV_TARGET_BEGIN("avx2,fma")
namespace avx2 {
#define NEUROMV_ISA 1
#include "_kernel_body.h"
#undef NEUROMV_ISA
}  // namespace avx2
NEUROMV_TARGET_END

NEUROMV_TARGET_BEGIN("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")
namespace avx512 {
#define NEUROMV_ISA 2
#include "_kernel_body.h"
#undef NEUROMV_ISA
}  // namespace avx512
NEUROMV_TARGET_END

NEUROMV_TARGET_BEGIN("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")
namespace avx512vnni {
#define NEUROMV_ISA 3
#include "_kernel_body.h"
#undef NEUROMV_ISA
}  // namespace avx512vnni
NEUROMV_TARGET_END
#endif  // NEUROMV_X86

namespace {

// Bit i set: path i is compiled in and this CPU (and its operating system, which must save the wide registers)
// runs it. __builtin_cpu_supports checks both.
int cpu_paths() {
    int paths = 1;
#ifdef NEUROMV_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) paths |= 2;
    if ((paths & 2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        paths |= 4;
    if ((paths & 4) && __builtin_cpu_supports("avx512vnni")) paths |= 8;
#endif
    return paths;
}

}  // namespace

extern "C" {

// Hidden widths with a compiled kernel; others use the torch path.
extern const int neuromv_kernel_hidden[] = {8, 16, 24, 32, 48, 64, 0};
extern const int neuromv_kernel_block = portable::P;

// The paths this CPU runs, as a bit mask (bit i: path i; bit 0, the portable path, is always set).
int neuromv_kernel_paths(void) {
    static int known = 0;  // 0: not yet asked (a race only asks the CPU twice)
    int paths = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (!paths) {
        paths = cpu_paths();
        __atomic_store_n(&known, paths, __ATOMIC_RELAXED);
    }
    return paths;
}

// Renders a whole frame (all ceil(width / 8) * ceil(height / 2) tiles) on `path`; each calling thread takes
// chunks of `chunk` tiles from *next (start it at 0; every worker of one frame gets the same pointer) until none
// are left. mode 0: RGB, mode 1: I420 (width and height even). color: the [3][4] affine colour map, or nullptr for
// none; palette: the palette's data [4 + 3 palette_n] (above), or nullptr for none. Returns 0; -1 if `hidden` has
// no compiled kernel or the arguments are impossible; -2 if this CPU cannot run `path` (nothing is done then).
// (Named ...5 since the palette arguments came: a stale build of an older layout is not found, and the renderer
// falls back to its torch path instead of calling it with the wrong arguments.)
int neuromv_render5(int path, int hidden, const float *ct, const float *W0, const float *c0, const float *Ws,
                    const uint32_t *Wq, const float *Wd, const float *bs, int L, const float *Wo, const float *bo,
                    const float *color, const float *palette, long palette_n, uint8_t *out, int mode, long width,
                    long height, long *next, long chunk) {
    if (path < 0 || path > 3 || !(neuromv_kernel_paths() & (1 << path))) return -2;
    if (chunk < 1) chunk = 1;
    if (width < 1 || height < 1 || L < 0 || mode < 0 || mode > 1 || (mode == 1 && (width % 2 || height % 2)))
        return -1;
    if (path == 3 && (!Wq || !Wd)) return -1;
    if (palette && (palette_n < 1 || palette_n > (1L << 24))) return -1;
    switch (path) {
#define NEUROMV_NET {W0, c0, Ws, bs, Wo, bo, Wq, Wd, L}
#ifdef NEUROMV_X86
        case 3: return avx512vnni::render(hidden, ct, NEUROMV_NET, color, palette, palette_n, out, mode, width, height,
                                          next, chunk);
        case 2: return avx512::render(hidden, ct, NEUROMV_NET, color, palette, palette_n, out, mode, width, height,
                                      next, chunk);
        case 1: return avx2::render(hidden, ct, NEUROMV_NET, color, palette, palette_n, out, mode, width, height, next,
                                    chunk);
#endif
        default: return portable::render(hidden, ct, NEUROMV_NET, color, palette, palette_n, out, mode, width, height,
                                         next, chunk);
#undef NEUROMV_NET
    }
}

// Renders n_frames frames of one network and size, each whole on one thread: each calling thread takes frames from
// *next_frame (start it at 0; every worker of the call gets the same pointer) until none are left, and renders frame
// f as neuromv_render5 would with W0 + f * w0_step, c0 + f * hidden and color + f * color_step (steps in floats; 0:
// the same for every frame; color nullptr: none) into out + f * out_step bytes. Many small frames (the structure's
// fit renders them at 32x18) then cost one call, and the cores share the frames instead of a frame's few tiles; each
// frame is the same as neuromv_render5's. Returns 0, or neuromv_render5's error (at the first frame that has one).
int neuromv_render5_frames(int path, int hidden, const float *ct, const float *W0, long w0_step, const float *c0,
                           const float *Ws, const uint32_t *Wq, const float *Wd, const float *bs, int L,
                           const float *Wo, const float *bo, const float *color, long color_step,
                           const float *palette, long palette_n, uint8_t *out, long out_step, int mode, long width,
                           long height, long n_frames, long *next_frame) {
    if (width < 1 || height < 1 || n_frames < 0 || w0_step < 0 || color_step < 0 || out_step < 0) return -1;
    for (;;) {
        long f = __atomic_fetch_add(next_frame, 1, __ATOMIC_RELAXED);
        if (f >= n_frames) return 0;
        long next = 0;  // this frame's tiles, all taken by this thread (one chunk of every pixel)
        int rc = neuromv_render5(path, hidden, ct, W0 + f * w0_step, c0 + f * hidden, Ws, Wq, Wd, bs, L, Wo, bo,
                                 color ? color + f * color_step : nullptr, palette, palette_n, out + f * out_step,
                                 mode, width, height, &next, width * height);
        if (rc) return rc;
    }
}

// The int16 path's tanh on n values of Z (int16, -32767..32767): out[i] = 8191 tanh(z[i] / 6144), rounded as the
// kernel does (to test it). Returns 0, or -2 (nothing done) if this CPU cannot run path 3.
int neuromv_tanh16(const int16_t *z, int16_t *out, long n) {
    if (!(neuromv_kernel_paths() & 8)) return -2;
#ifdef NEUROMV_X86
    avx512vnni::tanh16_many(z, out, n);
#endif
    (void)z; (void)out; (void)n;
    return 0;
}

}  // extern "C"

namespace {

// The bilinear lookup of a plane [height][width] at (x, y) pixels, the place clamped to the edge pixels' centres
// (grid_sample's 'border'); made once per place, used for every plane sampled there.
struct Bilinear {
    long x0, x1, y0, y1, width;
    float fx, fy;
    Bilinear(float x, float y, long w, long h) : width(w) {
        x = x < 0.0f ? 0.0f : x > (float)(w - 1) ? (float)(w - 1) : x;
        y = y < 0.0f ? 0.0f : y > (float)(h - 1) ? (float)(h - 1) : y;
        x0 = (long)x, y0 = (long)y;
        fx = x - (float)x0, fy = y - (float)y0;
        x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
    }
    float operator()(const float *p) const {
        const float top = p[y0 * width + x0] + fx * (p[y0 * width + x1] - p[y0 * width + x0]);
        const float bot = p[y1 * width + x0] + fx * (p[y1 * width + x1] - p[y1 * width + x0]);
        return top + fy * (bot - top);
    }
};

// neuromv_picture3's work; ZOOM false: zoom is 1 and every pixel reads its own maps (no lookups for them);
// PALETTE: palette [4 + 3 palette_n] is given (else nullptr).
template <bool ZOOM, bool PALETTE>
int picture_frame(const float *picture, const float *maps, long width, long height, float to_px, float zoom,
                  const double *c, const float *color, const float *palette, long palette_n, uint8_t *out, int mode,
                  long *next, long chunk) {
    const long plane = width * height, pairs = (height + 1) / 2;
    const float a0 = (float)c[0], a1 = (float)c[1], a2 = (float)c[2], a3 = (float)c[3];
    const float b0 = (float)c[4] * to_px, b1 = (float)c[5] * to_px, m = (float)c[6];
    const bool move = c[4] != 0.0 || c[5] != 0.0 || c[6] != 0.0, tone = a0 != 0.0f || a1 != 0.0f || a2 != 0.0f || a3 != 0.0f;
    const float xmax = (float)(width - 1), ymax = (float)(height - 1);
    const float ky = 219.0f / 255.0f, kb = 224.0f / 255.0f / 1.8556f, kr = 224.0f / 255.0f / 1.5748f;
    // the palette: its last entry, and its colours packed as the CPPN kernel packs them
    const long last_entry = palette_n - 1;
    const uint32_t *packed = PALETTE ? pack_palette(palette + 4, palette_n) : nullptr;
    void (*row_palette)(float *, long, const uint32_t *, const float *, int, uint8_t *, int) = portable::palette_row;
#ifdef NEUROMV_X86
    const int paths = neuromv_kernel_paths();
    row_palette = paths & 4 ? avx512::palette_row : paths & 2 ? avx2::palette_row : row_palette;
#endif
    float *row_rgb = new float[2 * 3 * width];  // two rows of colours, 0-255, for the chroma of I420
    for (;;) {
        const long first = __atomic_fetch_add(next, chunk, __ATOMIC_RELAXED);
        if (first >= pairs) break;
        const long last = first + chunk < pairs ? first + chunk : pairs;
        for (long pr = first; pr < last; pr++) {
            for (long r = 2 * pr; r < 2 * pr + 2 && r < height; r++) {
                float *rgb = row_rgb + (r - 2 * pr) * 3 * width;
                const float yr = (float)r + 0.5f - 0.5f * (float)height;
                for (long col = 0; col < width; col++) {
                    const long i = r * width + col;
                    float v[3], mp[7] = {};  // the maps where this pixel samples them (flow if move, tone if tone)
                    float xc = (float)col, yc = (float)r, xr = (float)col + 0.5f - 0.5f * (float)width, yz = yr;
                    if (ZOOM) {  // the sampling place moves to centre + (place - centre) zoom, the maps with it
                        xr *= zoom;
                        yz *= zoom;
                        xc = xr + 0.5f * (float)width - 0.5f;
                        yc = yz + 0.5f * (float)height - 0.5f;
                        const Bilinear at(xc, yc, width, height);
                        if (move)
                            for (int k = 3; k < 7; k++) mp[k] = at(maps + k * plane);
                        if (tone)
                            for (int k = 0; k < 3; k++) mp[k] = at(maps + k * plane);
                    } else {
                        if (move)
                            for (int k = 3; k < 7; k++) mp[k] = maps[k * plane + i];
                        if (tone)
                            for (int k = 0; k < 3; k++) mp[k] = maps[k * plane + i];
                    }
                    if (move || ZOOM) {
                        float x = xc, y = yc;
                        if (move) {  // (as written: the unzoomed frames stay bit for bit what they were)
                            x = xc + b0 * mp[3] + b1 * mp[5] - m * xr;
                            y = yc + b0 * mp[4] + b1 * mp[6] - m * yz;
                        }
                        x = x < 0.0f ? 0.0f : x > xmax ? xmax : x;
                        y = y < 0.0f ? 0.0f : y > ymax ? ymax : y;
                        long x0 = (long)x, y0 = (long)y;
                        const float fx = x - (float)x0, fy = y - (float)y0;
                        const long x1 = x0 + 1 < width ? x0 + 1 : x0, y1 = y0 + 1 < height ? y0 + 1 : y0;
                        for (int k = 0; k < 3; k++) {
                            const float *p = picture + k * plane;
                            const float top = p[y0 * width + x0] + fx * (p[y0 * width + x1] - p[y0 * width + x0]);
                            const float bot = p[y1 * width + x0] + fx * (p[y1 * width + x1] - p[y1 * width + x0]);
                            v[k] = top + fy * (bot - top);
                        }
                    } else {
                        for (int k = 0; k < 3; k++) v[k] = picture[k * plane + i];
                    }
                    if (tone) {
                        float g = a0 + a1 * mp[0] + a2 * mp[1] + a3 * mp[2];
                        g = g < -1.0f ? -1.0f : g > 1.0f ? 1.0f : g;
                        for (int k = 0; k < 3; k++) v[k] += g * v[k] * (1.0f - v[k]);
                    }
                    if (color) {
                        float o[3];
                        for (int k = 0; k < 3; k++) {
                            const float t = color[4 * k] * v[0] + color[4 * k + 1] * v[1] + color[4 * k + 2] * v[2] +
                                            color[4 * k + 3];
                            o[k] = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
                        }
                        v[0] = o[0], v[1] = o[1], v[2] = o[2];
                    }
                    if (PALETTE) {  // the palette and the output come in a pass of their own over the row, below
                        for (int k = 0; k < 3; k++) rgb[3 * col + k] = v[k] * 255.0f;
                        continue;
                    }
                    for (int k = 0; k < 3; k++) {
                        const float s = v[k] * 255.0f;
                        rgb[3 * col + k] = s;
                        if (mode == 0) {
                            const float q = s + 0.5f;
                            out[3 * i + k] = (uint8_t)(q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q);
                        }
                    }
                    if (mode == 1) {
                        const float yv = ky * (0.2126f * rgb[3 * col] + 0.7152f * rgb[3 * col + 1] +
                                               0.0722f * rgb[3 * col + 2]) + 16.5f;
                        out[i] = (uint8_t)(yv < 16.0f ? 16.0f : yv > 235.0f ? 235.0f : yv);
                    }
                }
                // the palette as neuromv_render5 applies it, in a pass of its own over the row (vectorised where the
                // CPU has AVX-512; its latency would not overlap within the long per-pixel work above)
                if (PALETTE)
                    row_palette(rgb, width, packed, palette, (int)last_entry, out + (mode == 0 ? 3 : 1) * r * width,
                                mode);
            }
            if (mode == 1) {  // the chroma of this pair of rows: the mean of each 2 x 2 block
                const long cw = width / 2;
                uint8_t *u = out + plane + pr * cw, *w = out + plane + plane / 4 + pr * cw;
                const float *t = row_rgb, *b = row_rgb + 3 * width;
                for (long q = 0; q < cw; q++) {
                    float sb = 0.0f, sr = 0.0f;
                    const float *px[4] = {t + 6 * q, t + 6 * q + 3, b + 6 * q, b + 6 * q + 3};
                    for (int k = 0; k < 4; k++) {
                        const float l = 0.2126f * px[k][0] + 0.7152f * px[k][1] + 0.0722f * px[k][2];
                        sb += px[k][2] - l;
                        sr += px[k][0] - l;
                    }
                    const float mb = 0.25f * kb * sb + 128.5f, mr = 0.25f * kr * sr + 128.5f;
                    u[q] = (uint8_t)(mb < 16.0f ? 16.0f : mb > 240.0f ? 240.0f : mb);
                    w[q] = (uint8_t)(mr < 16.0f ? 16.0f : mr > 240.0f ? 240.0f : mr);
                }
            }
        }
    }
    delete[] row_rgb;
    delete[] packed;
    return 0;
}

}  // namespace

extern "C" {

// A fitted picture moved by the music, one frame (neuromv.renderer.picture, the maths of neuromv.motion; the torch
// path picture_frame is the reference). picture [3][height][width]: the still picture, RGB in [0, 1]; maps
// [7][height][width]: the structure maps at each pixel (tone: luma, red-green, yellow-blue; flow: x, y of luma, x, y
// of red-green); c [7]: the frame's a0..a3, b0, b1, m; to_px: the picture's pixels per coordinate unit; zoom: the
// frame's zoom s about the view's centre (1: none). Pixel (row, col) is at (col, row) pixels, (xr, yr) = (col + 0.5
// - width / 2, row + 0.5 - height / 2) from the centre; with a zoom it samples the picture and the maps at the
// centre + s (xr, yr) instead (the maps bilinear, clamped as below), and (xr, yr) become s (xr, yr). It samples the
// picture at that place + (dx, dy) pixels, dx = to_px (b0 fx0 + b1 fx1) - m xr (dy likewise), bilinear, the
// position clamped to the edge pixels' centres (grid_sample's 'border'); then each channel v -> v + g v (1 - v),
// g = clamp(a0 + a1 t0 + a2 t1 + a3 t2, -1, 1); then the colour map (color [3][4] or nullptr), clamped to [0, 1];
// then the palette (palette [4 + 3 palette_n] or nullptr, as neuromv_render5 takes it) on the colour in 0-255.
// mode 0: RGB out [height][width][3], round(255 v); mode 1: I420 as neuromv_render5 writes it (even sizes). Each
// calling thread takes `chunk` pairs of rows at a time from *next (start at 0). Returns 0, or -1 for impossible
// arguments. (Named ...3 since the palette arguments came: a build of neuromv_picture2 is not found, not miscalled.)
int neuromv_picture3(const float *picture, const float *maps, long width, long height, float to_px, float zoom,
                     const double *c, const float *color, const float *palette, long palette_n, uint8_t *out,
                     int mode, long *next, long chunk) {
    if (width < 1 || height < 1 || mode < 0 || mode > 1 || (mode == 1 && (width % 2 || height % 2))) return -1;
    if (!(zoom > 0.0f) || !(zoom < 1e30f)) return -1;  // also NaN
    if (palette && (palette_n < 1 || palette_n > (1L << 24))) return -1;
    if (chunk < 1) chunk = 1;
#define NEUROMV_PICTURE(Z, P) \
    picture_frame<Z, P>(picture, maps, width, height, to_px, zoom, c, color, palette, palette_n, out, mode, next, chunk)
    if (zoom == 1.0f) return palette ? NEUROMV_PICTURE(false, true) : NEUROMV_PICTURE(false, false);
    return palette ? NEUROMV_PICTURE(true, true) : NEUROMV_PICTURE(true, false);
#undef NEUROMV_PICTURE
}

// n_frames frames of one picture, each whole on one thread, as neuromv_render5_frames renders its frames: frame f is
// neuromv_picture3's with zoom[f] (zoom nullptr: 1 for all), c + 7 f and color + f * color_step (floats; 0: the same
// for every frame; color nullptr: none), into out + f * out_step bytes. Returns 0, or neuromv_picture3's error.
int neuromv_picture3_frames(const float *picture, const float *maps, long width, long height, float to_px,
                            const float *zoom, const double *c, const float *color, long color_step,
                            const float *palette, long palette_n, uint8_t *out, long out_step, int mode,
                            long n_frames, long *next_frame) {
    if (n_frames < 0 || color_step < 0 || out_step < 0) return -1;
    for (;;) {
        long f = __atomic_fetch_add(next_frame, 1, __ATOMIC_RELAXED);
        if (f >= n_frames) return 0;
        long next = 0;  // this frame's rows, all taken by this thread
        int rc = neuromv_picture3(picture, maps, width, height, to_px, zoom ? zoom[f] : 1.0f, c + 7 * f,
                                  color ? color + f * color_step : nullptr, palette, palette_n, out + f * out_step,
                                  mode, &next, height);
        if (rc) return rc;
    }
}

}  // extern "C"
