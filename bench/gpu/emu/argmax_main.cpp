// Harness for the emulated argmax kernel (appended after kernels/argmax.cu by run_emu.py): rows of multiples of 1/8
// (many ties), plus rows with NaNs, ±0 and −inf, against the order the op promises (TensorPrimitives.IndexOfMax's:
// the first NaN wins, +0 beats −0, the lowest index wins a tie), written out here as a plain loop.
#include <random>

static int expected(const std::vector<float>& r) {
    for (size_t j = 0; j < r.size(); j++) if (std::isnan(r[j])) return (int)j;
    int best = 0;
    for (size_t j = 1; j < r.size(); j++) {
        float a = r[j], b = r[best];
        if (a > b || (a == 0.f && b == 0.f && !std::signbit(a) && std::signbit(b))) best = (int)j;
    }
    return best;
}

int main() {
    std::mt19937 rng(12);
    int fails = 0;
    for (auto [N, V] : std::vector<std::pair<int, int>>{ {1, 1}, {3, 7}, {5, 33}, {4, 1000}, {6, 32000}, {2, 50272}, {3, 2048} }) {
        std::vector<float> x((size_t)N * V);
        for (auto& v : x) v = (int)(rng() % 65) / 8.f - 4.f;
        if (N >= 3 && V >= 7) {
            x[V - 1] = NAN; x[V / 2] = NAN;
            for (int j = 0; j < V; j++) x[(size_t)V + j] = j % 2 == 0 ? -0.f : -1.f;
            x[(size_t)V + V - 2] = 0.f;
            for (int j = 0; j < V; j++) x[2 * (size_t)V + j] = -INFINITY;
        }
        std::vector<uint16_t> xb(x.size());
        for (size_t i = 0; i < x.size(); i++) xb[i] = from_f32<bf16>(x[i]).bits;   // exact: multiples of 1/8 in [−4, 4]
        for (int dt = 0; dt < 2; dt++) {
            std::vector<int> out(N, -1);
            unsigned threads = (unsigned)std::clamp((V + 31) / 32 * 32, 32, 1024);
            if (dt == 0) emu_launch({ (unsigned)N, 1, 1 }, threads, [&] { argmax_fwd_f32(out.data(), x.data(), V); });
            else emu_launch({ (unsigned)N, 1, 1 }, threads, [&] { argmax_fwd_bf16(out.data(), (const bf16*)xb.data(), V); });
            for (int n = 0; n < N; n++) {
                std::vector<float> row(x.begin() + (size_t)n * V, x.begin() + (size_t)(n + 1) * V);
                int e = expected(row);
                if (out[n] != e) { std::printf("%s N=%d V=%d row %d: kernel %d, expected %d\n", dt ? "bf16" : "f32", N, V, n, out[n], e); fails++; }
            }
        }
        std::printf("argmax N=%d V=%d: checked\n", N, V);
    }
    std::printf("%d failed\n", fails);
    return fails ? 1 : 0;
}
