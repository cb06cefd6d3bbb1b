// A stand-alone caller of the compiled kernel's C entry points, for tests/test_kernel_arm64.py: built with the
// kernel (src/neuromv/_kernel.cpp) for ARM64 and run under qemu-user, it renders what the x86-64 renderer passed to
// the kernel (recorded at the ctypes boundary) on the ARM64 build's portable path.
//
//   harness paths   prints neuromv_kernel_paths() and what neuromv_render5 returns for paths 1, 2 and 3
//   harness < rec   renders one record from stdin and writes the frame's bytes to stdout
//
// A record (native byte order, the same on both machines) starts with an int64 kind:
//   1, neuromv_render5 on path 0: int64 hidden, L, width, height, mode, has_color, palette_n, n_tiles; then float32
//      ct [n_tiles][3][16], W0 [hidden][3], c0 [hidden], Ws [L][hidden][hidden], bs [L][hidden], Wo [3][hidden],
//      bo [3], color [12] (if has_color), palette [4 + 3 palette_n] (if palette_n);
//   2, neuromv_picture3: int64 width, height, mode, has_color, palette_n; float64 to_px, zoom, c [7]; then float32
//      picture [3][height][width], maps [7][height][width], color [12] (if has_color), palette (if palette_n).
// Exit status 0, or 2 for a short record, 3 if the kernel refused it.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vector>

extern "C" {
int neuromv_kernel_paths(void);
int neuromv_render5(int path, int hidden, const float *ct, const float *W0, const float *c0, const float *Ws,
                    const uint32_t *Wq, const float *Wd, const float *bs, int L, const float *Wo, const float *bo,
                    const float *color, const float *palette, long palette_n, uint8_t *out, int mode, long width,
                    long height, long *next, long chunk);
int neuromv_picture3(const float *picture, const float *maps, long width, long height, float to_px, float zoom,
                     const double *c, const float *color, const float *palette, long palette_n, uint8_t *out,
                     int mode, long *next, long chunk);
}

namespace {

bool ok = true;

template <typename T>
T one() {
    T v{};
    ok = ok && fread(&v, sizeof v, 1, stdin) == 1;
    return v;
}

template <typename T>
std::vector<T> many(long n) {
    std::vector<T> v(n > 0 ? n : 0);
    ok = ok && (n <= 0 || fread(v.data(), sizeof(T), n, stdin) == (size_t)n);
    return v;
}

const float *or_null(const std::vector<float> &v) { return v.empty() ? nullptr : v.data(); }

}  // namespace

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "paths")) {
        float zero[64 * 16] = {0};
        uint8_t out[16 * 3];
        printf("%d", neuromv_kernel_paths());
        for (int path = 1; path <= 3; path++) {
            long next = 0;
            printf(" %d", neuromv_render5(path, 8, zero, zero, zero, zero, nullptr, zero, zero, 0, zero, zero,
                                          nullptr, nullptr, 0, out, 0, 4, 4, &next, 1));
        }
        printf("\n");
        return 0;
    }
    int64_t kind = one<int64_t>();
    std::vector<uint8_t> out;
    int rc = -1;
    if (kind == 1) {
        int64_t hidden = one<int64_t>(), L = one<int64_t>(), width = one<int64_t>(), height = one<int64_t>();
        int64_t mode = one<int64_t>(), has_color = one<int64_t>(), palette_n = one<int64_t>();
        int64_t n_tiles = one<int64_t>();
        if (!ok) return 2;
        auto ct = many<float>(n_tiles * 48), W0 = many<float>(hidden * 3), c0 = many<float>(hidden);
        auto Ws = many<float>(L * hidden * hidden), bs = many<float>(L * hidden);
        auto Wo = many<float>(3 * hidden), bo = many<float>(3);
        auto color = many<float>(has_color ? 12 : 0), palette = many<float>(palette_n ? 4 + 3 * palette_n : 0);
        if (!ok) return 2;
        out.resize(mode ? width * height * 3 / 2 : width * height * 3);
        long next = 0;
        rc = neuromv_render5(0, (int)hidden, ct.data(), W0.data(), c0.data(), or_null(Ws), nullptr, nullptr,
                             or_null(bs), (int)L, Wo.data(), bo.data(), or_null(color), or_null(palette), palette_n,
                             out.data(), (int)mode, width, height, &next, 1 << 20);
    } else if (kind == 2) {
        int64_t width = one<int64_t>(), height = one<int64_t>(), mode = one<int64_t>();
        int64_t has_color = one<int64_t>(), palette_n = one<int64_t>();
        double to_px = one<double>(), zoom = one<double>();
        auto c = many<double>(7);
        if (!ok) return 2;
        auto picture = many<float>(3 * width * height), maps = many<float>(7 * width * height);
        auto color = many<float>(has_color ? 12 : 0), palette = many<float>(palette_n ? 4 + 3 * palette_n : 0);
        if (!ok) return 2;
        out.resize(mode ? width * height * 3 / 2 : width * height * 3);
        long next = 0;
        rc = neuromv_picture3(picture.data(), maps.data(), width, height, (float)to_px, (float)zoom, c.data(),
                              or_null(color), or_null(palette), palette_n, out.data(), (int)mode, &next, 1 << 20);
    } else {
        return 2;
    }
    if (rc != 0) return 3;
    fwrite(out.data(), 1, out.size(), stdout);
    return 0;
}
