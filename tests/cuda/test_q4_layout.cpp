// test_q4_layout.cpp: host checks of the CUDA backend's weight layout and lane arithmetic
// (cuda/q4_layout.h, cuda/fragment_math.h, cuda/weight_packing.cpp), built with the host C++
// compiler by tests/cuda/test_q4_layout.py, so they run in CI without a GPU.
//
//  1. packing: every (row, column) of random q4 and q3 matrices (odd row counts, all group sizes)
//     reads back through packed_value(); scales and zeros sit at their rows' entries; padding rows
//     are zero; any thread count, and a buffer reused from a larger matrix, give the same bytes.
//  2. matrix-vector: a host emulation of every lane of the decode kernel, using the same
//     lane_row_dot the kernel calls, matches a double-precision reference y = x W^T.
//  3. matrix-matrix: the A (weights) and B (x) registers that the prefill kernel hands to
//     mma.m16n8k16 (scaled_weight_pairs and a_registers, b_registers), put back into matrices with
//     the PTX ISA's fragment tables ("Matrix Fragments for mma.m16n8k16 with floating point type",
//     written out independently below), multiplied, and the accumulators placed with
//     accumulator_row/token, match the reference.
// Exits 0 when every check passes; prints the first failures otherwise.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "awq_edge/fp16.h"
#include "fragment_math.h"
#include "weight_packing.h"

using namespace awq_edge;
using namespace awq_edge::cuda_layout;

namespace {

int failures = 0;

void fail(const char* what, long long a, long long b, long long c, double got, double want) {
  if (++failures <= 20) std::printf("FAIL %s (%lld, %lld, %lld): got %.6g, want %.6g\n", what, a, b, c, got, want);
}

// A random grouped matrix in the file's layout (FORMAT.md section 5).
struct FileMatrix {
  int bits, group;
  int64_t rows, cols;
  std::vector<uint32_t> q;         // (rows, cols) values
  std::vector<uint32_t> z;         // (rows, groups)
  std::vector<uint16_t> scales;    // (rows, groups) fp16
  std::vector<uint32_t> qweight, zeros;  // bit streams

  static void put(std::vector<uint32_t>& words, int64_t first_word, int64_t i, uint32_t v, int bits) {
    for (int t = 0; t < bits; ++t) {
      const int64_t bit = i * bits + t;
      if ((v >> t) & 1u) words[static_cast<size_t>(first_word + bit / 32)] |= 1u << (bit % 32);
    }
  }

  FileMatrix(int bits_, int group_, int64_t rows_, int64_t cols_, std::mt19937& rng)
      : bits(bits_), group(group_), rows(rows_), cols(cols_) {
    const int64_t groups = cols / group, row_words = cols * bits / 32, zero_words = (groups * bits + 31) / 32;
    std::uniform_int_distribution<uint32_t> value(0, (1u << bits) - 1);
    std::uniform_real_distribution<float> scale(0.001f, 0.05f);
    q.resize(static_cast<size_t>(rows * cols));
    z.resize(static_cast<size_t>(rows * groups));
    scales.resize(z.size());
    qweight.assign(static_cast<size_t>(rows * row_words), 0u);
    zeros.assign(static_cast<size_t>(rows * zero_words), 0u);
    for (int64_t n = 0; n < rows; ++n) {
      for (int64_t k = 0; k < cols; ++k) {
        const uint32_t v = value(rng);
        q[static_cast<size_t>(n * cols + k)] = v;
        put(qweight, n * row_words, k, v, bits);
      }
      for (int64_t j = 0; j < groups; ++j) {
        const uint32_t v = value(rng);
        z[static_cast<size_t>(n * groups + j)] = v;
        put(zeros, n * zero_words, j, v, bits);
        scales[static_cast<size_t>(n * groups + j)] = float_to_fp16(scale(rng));
      }
    }
  }

  double w(int64_t n, int64_t k) const {
    const size_t j = static_cast<size_t>(n * (cols / group) + k / group);
    return (static_cast<double>(q[static_cast<size_t>(n * cols + k)]) - z[j]) * fp16_to_float(scales[j]);
  }

  std::vector<TensorView> views() const {
    auto view = [](const void* data, size_t bytes) {
      TensorView v;
      v.data = data;
      v.size = bytes;
      return v;
    };
    return {view(qweight.data(), qweight.size() * 4), view(scales.data(), scales.size() * 2),
            view(zeros.data(), zeros.size() * 4)};
  }
};

Scheme grouped(int bits, int group) {
  Scheme s;
  s.kind = Scheme::Kind::Grouped;
  s.bits = bits;
  s.group_size = group;
  return s;
}

// Prepared activations (q4_layout.h): fp16, permuted per 32-column block, scaled per group when
// `scaled`; multipliers (m, groups).
void prepare(const std::vector<float>& x, int64_t m, int64_t cols, int64_t group, bool scaled,
             std::vector<uint16_t>& out, std::vector<float>& multipliers) {
  const int64_t groups = cols / group;
  out.assign(static_cast<size_t>(m * cols), 0);
  multipliers.assign(static_cast<size_t>(m * groups), 1.0f);
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t j = 0; j < groups; ++j) {
      float largest = 0.0f;
      for (int64_t k = j * group; k < (j + 1) * group; ++k) largest = std::fmax(largest, std::fabs(x[t * cols + k]));
      const float multiplier = scaled ? group_multiplier(largest) : 1.0f;
      multipliers[static_cast<size_t>(t * groups + j)] = multiplier;
      for (int64_t k = j * group; k < (j + 1) * group; ++k) {
        const int64_t position = (k / 32) * 32 + permuted_position(static_cast<int>(k % 32));
        out[static_cast<size_t>(t * cols + position)] = float_to_fp16(x[t * cols + k] / multiplier);
      }
    }
  }
}

// The 4 zero-point bytes lane group `gid` loads with one 32-bit load (entries 4 gid .. 4 gid + 3).
uint32_t zeros4_of(const PackedGroupedWeight& p, int64_t strip, int64_t group, int gid) {
  const size_t first = static_cast<size_t>((strip * p.groups + group) * 32 + 4 * gid);
  return p.zeros[first] | p.zeros[first + 1] << 8 | p.zeros[first + 2] << 16 | static_cast<uint32_t>(p.zeros[first + 3]) << 24;
}

void check_packing(const FileMatrix& f, const PackedGroupedWeight& p) {
  for (int64_t n = 0; n < f.rows; ++n) {
    for (int64_t k = 0; k < f.cols; ++k) {
      const uint32_t got = packed_value(p.words.data(), p.blocks, n, k);
      const uint32_t want = f.q[static_cast<size_t>(n * f.cols + k)];
      if (got != want) fail("packed value (bits, row, col)", f.bits, n, k, got, want);
    }
    for (int64_t j = 0; j < p.groups; ++j) {
      const size_t entry = static_cast<size_t>(((n / 32) * p.groups + j) * 32 + meta_entry(static_cast<int>(n % 32)));
      if (p.zeros[entry] != f.z[static_cast<size_t>(n * p.groups + j)]) fail("zero (bits, row, group)", f.bits, n, j, p.zeros[entry], 0);
      if (p.scales[entry] != f.scales[static_cast<size_t>(n * p.groups + j)]) fail("scale (bits, row, group)", f.bits, n, j, p.scales[entry], 0);
    }
  }
  float largest = 0.0f;
  for (uint16_t scale : f.scales) largest = std::max(largest, std::fabs(fp16_to_float(scale)));
  if (p.largest_scale != largest) fail("largest scale (bits, rows, cols)", f.bits, f.rows, f.cols, p.largest_scale, largest);
  // padding rows of the last strip are zero (also when the buffer held another matrix before)
  for (int64_t n = f.rows; n < p.strips * 32; ++n) {
    for (int64_t j = 0; j < p.groups; ++j) {
      const size_t entry = static_cast<size_t>(((n / 32) * p.groups + j) * 32 + meta_entry(static_cast<int>(n % 32)));
      if (p.scales[entry] != 0) fail("padding scale (row, group, -)", n, j, 0, p.scales[entry], 0);
      if (p.zeros[entry] != 0) fail("padding zero point (row, group, -)", n, j, 0, p.zeros[entry], 0);
    }
    for (int64_t k = 0; k < f.cols; ++k) {
      const uint32_t got = packed_value(p.words.data(), p.blocks, n, k);
      if (got != 0) fail("padding value (row, col, -)", n, k, 0, got, 0);
    }
  }
  const size_t sizes[3] = {p.words.size(), p.scales.size(), p.zeros.size()};
  const size_t want[3] = {static_cast<size_t>(p.strips * p.blocks * 128), static_cast<size_t>(p.strips * p.groups * 32),
                          static_cast<size_t>(p.strips * p.groups * 32)};
  for (int i = 0; i < 3; ++i) {
    if (sizes[i] != want[i]) fail("packed sizes (words, scales, zeros)", i, f.rows, f.cols, static_cast<double>(sizes[i]), static_cast<double>(want[i]));
  }
}

// The packing's thread count does not change its result, and a buffer reused from a larger matrix
// (whose bytes are still there) packs a smaller one exactly like a fresh one.
void check_packing_threads_and_reuse(std::mt19937& rng) {
  PackedGroupedWeight reused;
  for (int bits : {4, 3}) {
    FileMatrix large(bits, 64, 300, 512, rng), small(bits, 64, 45, 256, rng);
    for (auto* f : {&large, &small}) {
      const PackedGroupedWeight one = pack_grouped_weight(grouped(bits, 64), f->rows, f->cols, f->views(), 1);
      pack_grouped_weight(grouped(bits, 64), f->rows, f->cols, f->views(), reused, 4);
      check_packing(*f, reused);
      if (one.words != reused.words || one.scales != reused.scales || one.zeros != reused.zeros ||
          one.largest_scale != reused.largest_scale) {
        fail("1 thread vs 4 threads into a reused buffer (bits, rows, cols)", bits, f->rows, f->cols, 0, 1);
      }
    }
  }
  // more threads than strips
  FileMatrix f(4, 32, 40, 64, rng);
  check_packing(f, pack_grouped_weight(grouped(4, 32), f.rows, f.cols, f.views(), 64));
  // a nan scale in any thread's strips makes the largest scale nan
  for (int64_t row : {0, 150, 299}) {
    FileMatrix g(4, 64, 300, 128, rng);
    g.scales[static_cast<size_t>(row * 2 + 1)] = 0x7E00u;  // fp16 nan
    const PackedGroupedWeight packed = pack_grouped_weight(grouped(4, 64), g.rows, g.cols, g.views(), 4);
    if (!std::isnan(packed.largest_scale)) fail("a nan scale in row (row, -, -) is the largest", row, 0, 0, packed.largest_scale, 0);
  }
}

// The decode kernel (gemv_q4.cu) lane by lane: same lane_row_dot, same epilogue arithmetic.
void check_matrix_vector(const FileMatrix& f, const PackedGroupedWeight& p, std::mt19937& rng) {
  const int64_t m = 3;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * f.cols));
  for (float& v : x) v = normal(rng) * 4.0f;
  x[5] = 300.0f;  // an outlier: its group is scaled by 512, the others keep full precision
  std::vector<uint16_t> xp;
  std::vector<float> multipliers;
  prepare(x, m, f.cols, f.group, true, xp, multipliers);
  for (int64_t t = 0; t < m; ++t) {
    std::vector<double> y(static_cast<size_t>(p.strips * 32), 0.0);
    for (int64_t s = 0; s < p.strips; ++s) {
      for (int64_t b = 0; b < p.blocks; ++b) {
        const int64_t j = b * 32 / f.group;
        for (int lane = 0; lane < 32; ++lane) {
          uint32_t xl[4];
          const int tig = lane & 3, gid = lane >> 2;
          std::memcpy(xl, &xp[static_cast<size_t>(t * f.cols + b * 32 + 8 * tig)], 16);
          for (int r = 0; r < 4; ++r) {
            // the lane's 8-byte load of its 4 rows' scales: row r's is half r % 2 of word r / 2
            const size_t first_entry = static_cast<size_t>((s * p.groups + j) * 32 + 4 * gid);
            const size_t pair_entry = first_entry + static_cast<size_t>(r & 2);
            const uint32_t scale2 = p.scales[pair_entry] | (static_cast<uint32_t>(p.scales[pair_entry + 1]) << 16);
            const uint32_t word = p.words[static_cast<size_t>(word_index(s, b, p.blocks, lane, r))];
            const float part = lane_row_dot(word, zero_pairs(zeros4_of(p, s, j, gid)), r, xl, scale2);
            y[static_cast<size_t>(s * 32 + word_row(lane, r))] += part * multipliers[static_cast<size_t>(t * p.groups + j)];
          }
        }
      }
    }
    for (int64_t n = 0; n < f.rows; ++n) {
      double want = 0.0, magnitude = 0.0;
      for (int64_t k = 0; k < f.cols; ++k) {
        want += f.w(n, k) * x[static_cast<size_t>(t * f.cols + k)];
        magnitude += std::fabs(f.w(n, k) * x[static_cast<size_t>(t * f.cols + k)]);
      }
      const double got = y[static_cast<size_t>(n)];
      if (std::fabs(got - want) > 2e-3 * magnitude + 1e-6) fail("matrix-vector (bits, token, row)", f.bits, t, n, got, want);
    }
  }
}

// PTX ISA fragment tables for mma.m16n8k16 with .f16 A/B and .f32 C (element i of a lane):
int ptx_a_row(int lane, int i) { return (lane >> 2) + ((i < 2 || (i >= 4 && i < 6)) ? 0 : 8); }
int ptx_a_col(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 4 ? 8 : 0); }
int ptx_b_row(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 2 ? 8 : 0); }
int ptx_b_col(int lane, int /*i*/) { return lane >> 2; }
int ptx_c_row(int lane, int i) { return (lane >> 2) + (i >= 2 ? 8 : 0); }
int ptx_c_col(int lane, int i) { return (lane % 4) * 2 + (i & 1); }

float half_of(uint32_t pair, int which) { return fp16_to_float(static_cast<uint16_t>(which ? pair >> 16 : pair & 0xFFFF)); }

// The prefill kernel (gemm_q4.cu) for n8 tiles of tokens, with mma emulated from the tables: A = 16
// rows of W (m16 tile rt of a strip), B = x of 8 tokens, C = that tile of y^T.
void check_matrix_matrix(const FileMatrix& f, const PackedGroupedWeight& p, std::mt19937& rng) {
  const int64_t m = 19;  // three n8 tiles, the last partly padding
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * f.cols));
  for (float& v : x) v = normal(rng);
  std::vector<uint16_t> xp;
  std::vector<float> unused;
  prepare(x, m, f.cols, f.group, false, xp, unused);
  std::vector<double> y(static_cast<size_t>(m * p.strips * 32), 0.0);
  for (int64_t tile = 0; tile * 8 < m; ++tile) {
    for (int64_t s = 0; s < p.strips; ++s) {
      for (int64_t b = 0; b < p.blocks; ++b) {
        const int64_t j = b * 32 / f.group;
        // registers of every lane: a[m16 tile][k16 tile][lane], b[k16 tile][lane]
        uint32_t a[2][2][32][4], bregs[2][32][2];
        for (int lane = 0; lane < 32; ++lane) {
          const int gid = lane >> 2, tig = lane & 3;
          uint32_t xs[4] = {0, 0, 0, 0};
          const int64_t token = tile * 8 + gid;
          if (token < m) std::memcpy(xs, &xp[static_cast<size_t>(token * f.cols + b * 32 + 8 * tig)], 16);
          b_registers(xs, bregs[0][lane], bregs[1][lane]);
          uint32_t pairs[4][4];
          for (int r = 0; r < 4; ++r) {
            const size_t entry = static_cast<size_t>((s * p.groups + j) * 32 + 4 * gid + r);
            const uint32_t scale_pair = static_cast<uint32_t>(p.scales[entry]) * 0x00010001u;
            scaled_weight_pairs(p.words[static_cast<size_t>(word_index(s, b, p.blocks, lane, r))],
                                zero_pairs(zeros4_of(p, s, j, gid)), r, scale_pair, pairs[r]);
          }
          for (int rt = 0; rt < 2; ++rt) a_registers(pairs[2 * rt], pairs[2 * rt + 1], a[rt][0][lane], a[rt][1][lane]);
        }
        for (int k16 = 0; k16 < 2; ++k16) {
          double A[2][16][16], B[16][8];
          for (int lane = 0; lane < 32; ++lane) {
            for (int rt = 0; rt < 2; ++rt)
              for (int i = 0; i < 8; ++i) A[rt][ptx_a_row(lane, i)][ptx_a_col(lane, i)] = half_of(a[rt][k16][lane][i / 2], i & 1);
            for (int i = 0; i < 4; ++i) B[ptx_b_row(lane, i)][ptx_b_col(lane, i)] = half_of(bregs[k16][lane][i / 2], i & 1);
          }
          for (int rt = 0; rt < 2; ++rt) {
            for (int lane = 0; lane < 32; ++lane) {
              for (int i = 0; i < 4; ++i) {
                double c = 0.0;
                for (int kk = 0; kk < 16; ++kk) c += A[rt][ptx_c_row(lane, i)][kk] * B[kk][ptx_c_col(lane, i)];
                // the kernel's placement of accumulator i
                const int64_t token = tile * 8 + accumulator_token(lane, i);
                const int64_t row = s * 32 + 16 * rt + accumulator_row(lane, i);
                if (token < m) y[static_cast<size_t>(token * p.strips * 32 + row)] += c;
              }
            }
          }
        }
      }
    }
  }
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t n = 0; n < f.rows; ++n) {
      double want = 0.0, magnitude = 0.0;
      for (int64_t k = 0; k < f.cols; ++k) {
        want += f.w(n, k) * x[static_cast<size_t>(t * f.cols + k)];
        magnitude += std::fabs(f.w(n, k) * x[static_cast<size_t>(t * f.cols + k)]);
      }
      const double got = y[static_cast<size_t>(t * p.strips * 32 + n)];
      // fp16 rounding of x and of each dequantized weight: 2 * 2^-11 of the magnitude
      if (std::fabs(got - want) > 1.2e-3 * magnitude + 1e-6) fail("matrix-matrix (bits, token, row)", f.bits, t, n, got, want);
    }
  }
}

void check_helpers() {
  // nibble_column and permuted_position are inverse views of the same lane order
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 8; ++i) {
      const int c = nibble_column(lane, i);
      if (column_tig(c) != (lane & 3) || column_nibble(c) != i) fail("column_tig/nibble (lane, i, c)", lane, i, c, 0, 0);
      const int p = i & 3, e = i >> 2;
      if (permuted_position(c) != 8 * (lane & 3) + 2 * p + e) fail("permuted_position (lane, i, c)", lane, i, c, permuted_position(c), 0);
    }
  }
  for (int row = 0; row < 32; ++row) {
    const int e = meta_entry(row);
    if (word_row(4 * (e / 4), e % 4) != row) fail("meta_entry (row, entry, -)", row, e, 0, 0, 0);
  }
  // unpack_pairs gives q - z exactly for every nibble position, value and zero point, with the
  // zero constants built by PRMT from any byte position
  for (uint32_t z = 0; z < 16; ++z) {
    for (int r = 0; r < 4; ++r) {
      const uint32_t zeros4 = (z << (8 * r)) | (0x05050505u & ~(0xFFu << (8 * r)));
      const ZeroPairs zp = zero_pairs(zeros4);
      for (uint32_t q = 0; q < 16; ++q) {
        const uint32_t word = q * 0x11111111u ^ 0x76543210u;  // nibble i = q ^ i
        uint32_t d[4];
        unpack_pairs(word, biased_zero_pair_of_byte(zp.zeros4, r), negative_sixteenth_zero_pair_of_byte(zp.zeros4_times16, r), d);
        for (int p = 0; p < 4; ++p) {
          const double lo = static_cast<double>(q ^ static_cast<uint32_t>(p)) - z;
          const double hi = static_cast<double>(q ^ static_cast<uint32_t>(p + 4)) - z;
          if (half_of(d[p], 0) != lo || half_of(d[p], 1) != hi) fail("unpack_pairs (q, z, pair)", q, z, p, half_of(d[p], 0), lo);
        }
      }
    }
  }
  const float cases[][2] = {{0.0f, 1.0f}, {1.0f, 2.0f}, {0.75f, 1.0f}, {3.0f, 4.0f}, {4.0f, 8.0f}, {300.0f, 512.0f},
                            {1e-3f, 1.0f / 512.0f}, {INFINITY, 1.0f}, {NAN, 1.0f}};
  for (const auto& c : cases) {
    if (group_multiplier(c[0]) != c[1]) fail("group_multiplier (-, -, -)", 0, 0, 0, group_multiplier(c[0]), c[1]);
  }
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  setenv("AWQ_EDGE_CUDA_PACKING_THREADS", "3", 1);  // read once, at the first packing
  if (packing_threads() != 3) fail("AWQ_EDGE_CUDA_PACKING_THREADS=3 (-, -, -)", 0, 0, 0, packing_threads(), 3);
  check_helpers();
  check_packing_threads_and_reuse(rng);
  const int64_t shapes[][2] = {{1, 128}, {31, 64}, {32, 256}, {33, 192}, {70, 576}, {96, 384}};
  for (int bits : {4, 3}) {
    for (int group : {32, 64, 128}) {
      for (const auto& shape : shapes) {
        if (shape[1] % group != 0) continue;
        FileMatrix f(bits, group, shape[0], shape[1], rng);
        const PackedGroupedWeight p = pack_grouped_weight(grouped(bits, group), f.rows, f.cols, f.views());
        check_packing(f, p);
        check_matrix_vector(f, p, rng);
        if (shape[0] <= 70) check_matrix_matrix(f, p, rng);
      }
    }
  }
  // fp16 accumulation: a group's sums reach at most 15 * group_size * largest_scale, kept <= 32768
  if (!fp16_accumulation_safe(17.0f, 128) || fp16_accumulation_safe(17.1f, 128) || !fp16_accumulation_safe(68.0f, 32) ||
      fp16_accumulation_safe(std::nanf(""), 32) || fp16_accumulation_safe(INFINITY, 32)) {
    fail("fp16_accumulation_safe's bound", 0, 0, 0, 0, 0);
  }
  {  // a nan scale makes the largest scale nan, so the weight keeps fp32 accumulation
    FileMatrix f(4, 32, 4, 64, rng);
    f.scales[5] = 0x7E00u;  // fp16 nan
    const PackedGroupedWeight p = pack_grouped_weight(grouped(4, 32), 4, 64, f.views());
    if (!std::isnan(p.largest_scale)) fail("a nan scale is the largest", 0, 0, 0, p.largest_scale, 0);
  }
  // a wrong tensor size is a named error
  {
    FileMatrix f(4, 32, 4, 64, rng);
    std::vector<TensorView> views = f.views();
    views[1].size -= 2;
    try {
      pack_grouped_weight(grouped(4, 32), 4, 64, views);
      fail("size check did not throw", 0, 0, 0, 0, 0);
    } catch (const std::invalid_argument& e) {
      if (std::string(e.what()).find("scales") == std::string::npos) fail("size error names the tensor", 0, 0, 0, 0, 0);
    }
  }
  if (failures == 0) std::printf("all checks passed\n");
  return failures == 0 ? 0 : 1;
}
