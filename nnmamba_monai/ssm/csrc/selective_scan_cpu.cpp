// Selective scan forward on the CPU: one pass over the inputs, the state kept in registers.
//
// Built on first use by nnmamba_monai/ssm/scan_cpp.py (torch.utils.cpp_extension.load); see that module for the
// call contract. Per (batch b, channel d) row, tokens are taken in tiles of TILE: the tile's time steps
// (softplus of delta + bias), decays exp(delta_t * A[d, n]) and inputs delta_t * u_t * B[b, t, n] are computed
// first (independent across tokens, so they vectorise), then the recurrence
//     h[n] = decay[t, n] * h[n] + input[t, n],   y_t = sum_n C[b, t, n] * h[n] + D[d] * u_t
// walks the tile with N states in vector registers; the SiLU(z) gate is applied at the end of the row.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace {

constexpr int TILE = 64;  // tokens per tile: the tile's decays and inputs (2 * TILE * N floats) stay in L1

struct Row {
  const float* u;      // (L,) the row's input
  const float* delta;  // (L,) its time steps, before bias and softplus
  const float* a;      // (N,) A[d, :]
  const float* b;      // (L, N) B of the row's batch entry, token-major
  const float* c;      // (L, N) C, token-major
  const float* z;      // (L,) gate, or nullptr
  float* out;          // (L,)
  float* last;         // (N,) the state after the last token
  int64_t length;
  float delta_bias;
  float d_skip;
  bool softplus;
};

template <int N>
void scan_row(const Row& row) {
  alignas(64) float h[N];
  alignas(64) float step[TILE];
  alignas(64) float drive[TILE];
  alignas(64) float decay[TILE * N];
  alignas(64) float input[TILE * N];
  for (int n = 0; n < N; ++n) h[n] = 0.f;
  for (int64_t start = 0; start < row.length; start += TILE) {
    const int count = static_cast<int>(std::min<int64_t>(TILE, row.length - start));
    const float* u = row.u + start;
#pragma omp simd
    for (int t = 0; t < count; ++t) {
      float dt = row.delta[start + t] + row.delta_bias;
      if (row.softplus) dt = dt <= 20.f ? std::log1p(std::exp(dt)) : dt;
      step[t] = dt;
      drive[t] = dt * u[t];
    }
    const float* b = row.b + start * N;
    for (int t = 0; t < count; ++t) {
#pragma omp simd
      for (int n = 0; n < N; ++n) {
        decay[t * N + n] = std::exp(step[t] * row.a[n]);
        input[t * N + n] = drive[t] * b[t * N + n];
      }
    }
    const float* c = row.c + start * N;
    for (int t = 0; t < count; ++t) {
      float y = 0.f;
#pragma omp simd reduction(+ : y)
      for (int n = 0; n < N; ++n) {
        h[n] = decay[t * N + n] * h[n] + input[t * N + n];
        y += c[t * N + n] * h[n];
      }
      row.out[start + t] = y + row.d_skip * u[t];
    }
  }
  if (row.z != nullptr) {
    for (int64_t t = 0; t < row.length; ++t) {
      const float gate = row.z[t];
      row.out[t] *= gate / (1.f + std::exp(-gate));
    }
  }
  for (int n = 0; n < N; ++n) row.last[n] = h[n];
}

using RowScan = void (*)(const Row&);

// The state sizes instantiated here are KERNEL_D_STATES in scan_cpp.py, which sends other sizes to the torch scan.

RowScan row_scan_for(int64_t d_state) {
  switch (d_state) {
    case 1: return scan_row<1>;
    case 2: return scan_row<2>;
    case 4: return scan_row<4>;
    case 8: return scan_row<8>;
    case 16: return scan_row<16>;
    case 32: return scan_row<32>;
    case 64: return scan_row<64>;
    default: return nullptr;
  }
}

const float* optional_data(const c10::optional<torch::Tensor>& t) {
  return t.has_value() ? t->data_ptr<float>() : nullptr;
}

}  // namespace

// u, delta: (B, D, L); A: (D, N); b_tokens, c_tokens: (B, L, N); d_skip, delta_bias: (D,); z: (B, D, L).
// Every tensor float32 and contiguous. Returns out (B, D, L) and the last state (B, D, N).
std::vector<torch::Tensor> selective_scan_forward(const torch::Tensor& u, const torch::Tensor& delta,
                                                  const torch::Tensor& A, const torch::Tensor& b_tokens,
                                                  const torch::Tensor& c_tokens,
                                                  const c10::optional<torch::Tensor>& d_skip,
                                                  const c10::optional<torch::Tensor>& z,
                                                  const c10::optional<torch::Tensor>& delta_bias, bool softplus) {
  const int64_t batch = u.size(0), channels = u.size(1), length = u.size(2), d_state = A.size(1);
  const RowScan scan = row_scan_for(d_state);
  TORCH_CHECK(scan != nullptr, "selective_scan_forward: d_state ", d_state, " is not 1, 2, 4, 8, 16, 32 or 64");
  for (const torch::Tensor* t : {&u, &delta, &A, &b_tokens, &c_tokens}) {
    TORCH_CHECK(t->scalar_type() == torch::kFloat32 && t->is_contiguous(), "selective_scan_forward: float32, contiguous");
  }
  auto out = torch::empty_like(u);
  auto last = torch::empty({batch, channels, d_state}, u.options());
  const float* bias = optional_data(delta_bias);
  const float* skip = optional_data(d_skip);
  const float* gate = optional_data(z);
  at::parallel_for(0, batch * channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row_index = begin; row_index < end; ++row_index) {
      const int64_t b = row_index / channels, d = row_index % channels;
      Row row{u.data_ptr<float>() + row_index * length,
              delta.data_ptr<float>() + row_index * length,
              A.data_ptr<float>() + d * d_state,
              b_tokens.data_ptr<float>() + b * length * d_state,
              c_tokens.data_ptr<float>() + b * length * d_state,
              gate == nullptr ? nullptr : gate + row_index * length,
              out.data_ptr<float>() + row_index * length,
              last.data_ptr<float>() + row_index * d_state,
              length,
              bias == nullptr ? 0.f : bias[d],
              skip == nullptr ? 0.f : skip[d],
              softplus};
      scan(row);
    }
  });
  return {out, last};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("selective_scan_forward", &selective_scan_forward, "selective scan forward (float32, CPU)");
}
