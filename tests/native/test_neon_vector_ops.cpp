// test_neon_vector_ops.cpp: every op of the NEON table of vector_ops.h against the portable table,
// on random data of odd lengths (1, 3, 7, 17, 64, 576, 1000, 1536; head dims 2 .. 128 over 1 .. 1000
// positions) and edge values, and the NEON exp against exp computed in double. Built for aarch64
// (neon/CMakeLists.txt) and run under qemu by tests/native/test_neon_under_qemu.py.
//
// Errors are measured in units of u * m, u = 2^-24 (fp32's unit roundoff) and m the size of the
// terms that produce a result (for sums, the sum of the terms' absolute values), and must stay
// within these bounds:
//   add, scale_mul                            0       (the same roundings as the portable loops)
//   rotate_half (m = |x1 c| + |x2 s|)         3       (fused multiply-subtract against two roundings)
//   sum_squares, add_sum_squares, dot_rows,   n + 16  (the portable sum adds in element order, NEON in
//   axpy_rows (n terms)                               4 to 8 lanes; both errors are at most about n u m)
//   softmax (m = the portable result)         n + 16  (its sum as above; the exps 2 ulp, the division)
//   silu_mul (m = the portable result)        8       (the exp, then 1 + e, a division and a product)
// plus an absolute 1e-44 where results can be subnormal (softmax, silu_mul). The exp: at most 2 ulp
// from exp in double for normal results, at most one subnormal step (2^-149) below FLT_MIN, and
// exactly 0, 1, inf and NaN where it must be (-inf and x < -104, x = 0, x > 88.73, NaN).
// Prints one line per op with the largest error seen (in those units); exit status 1 on a failure.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "vector_ops.h"

using awq_edge::cpu::VectorOps;

namespace {

constexpr double kUnit = 1.0 / (1 << 24);  // fp32 unit roundoff
const int64_t kLengths[] = {1, 3, 7, 17, 64, 576, 1000, 1536};

struct OpResult {
  int cases = 0, failures = 0;
  double worst = 0.0;  // largest error in units of u * m
};
std::map<std::string, OpResult> results;

// One result of `op` in case `what`: |got - want| <= bound * u * m + absolute.
void expect_close(const std::string& op, const std::string& what, double got, double want, double m, double bound,
                  double absolute = 0.0) {
  const double error = std::fabs(got - want);
  const bool ok = error <= bound * kUnit * m + absolute || (std::isnan(got) && std::isnan(want)) || got == want;
  OpResult& r = results[op];
  if (m > 0 && !std::isnan(error)) r.worst = std::max(r.worst, std::max(error - absolute, 0.0) / (kUnit * m));
  if (!ok) {
    if (++r.failures <= 5) {
      std::printf("FAIL %s %s: neon %.9g, portable %.9g, |difference| %.3g > %.3g\n", op.c_str(), what.c_str(), got,
                  want, error, bound * kUnit * m + absolute);
    }
  }
}

std::vector<float> normal_vector(int64_t n, float sigma, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

std::string case_name(int64_t n, int64_t i) { return "n=" + std::to_string(n) + " i=" + std::to_string(i); }

void test_norm_ops(const VectorOps& neon, const VectorOps& ref, std::mt19937& rng) {
  for (int64_t n : kLengths) {
    const std::vector<float> x = normal_vector(n, 3.0f, rng), y = normal_vector(n, 1.0f, rng);
    const std::vector<float> w = normal_vector(n, 1.0f, rng);
    double squares = 0.0;
    for (float v : x) squares += double(v) * v;
    results["sum_squares"].cases++;
    expect_close("sum_squares", case_name(n, 0), neon.sum_squares(x.data(), n), ref.sum_squares(x.data(), n), squares,
                 double(n) + 16);

    std::vector<float> xa = x, xb = x;
    const float sa = neon.add_sum_squares(xa.data(), y.data(), n), sb = ref.add_sum_squares(xb.data(), y.data(), n);
    double new_squares = 0.0;
    for (float v : xb) new_squares += double(v) * v;
    results["add_sum_squares"].cases++;
    expect_close("add_sum_squares", case_name(n, -1), sa, sb, new_squares, double(n) + 16);
    for (int64_t i = 0; i < n; ++i) expect_close("add_sum_squares", case_name(n, i), xa[i], xb[i], 1.0, 0.0);

    xa = x;
    xb = x;
    neon.add(xa.data(), y.data(), n);
    ref.add(xb.data(), y.data(), n);
    results["add"].cases++;
    for (int64_t i = 0; i < n; ++i) expect_close("add", case_name(n, i), xa[i], xb[i], 1.0, 0.0);

    std::vector<float> oa(static_cast<size_t>(n)), ob(static_cast<size_t>(n));
    const float scale = 0.37f;
    neon.scale_mul(x.data(), scale, w.data(), oa.data(), n);
    ref.scale_mul(x.data(), scale, w.data(), ob.data(), n);
    results["scale_mul"].cases++;
    for (int64_t i = 0; i < n; ++i) expect_close("scale_mul", case_name(n, i), oa[i], ob[i], 1.0, 0.0);
  }
}

void test_rotate_half(const VectorOps& neon, const VectorOps& ref, std::mt19937& rng) {
  std::uniform_real_distribution<float> angle(-100.0f, 100.0f);
  for (int64_t half : {1, 3, 4, 7, 17, 32, 64}) {
    const std::vector<float> x = normal_vector(2 * half, 2.0f, rng);
    std::vector<float> cos(static_cast<size_t>(half)), sin(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
      const float a = angle(rng);
      cos[i] = std::cos(a);
      sin[i] = std::sin(a);
    }
    std::vector<float> xa = x, xb = x;
    neon.rotate_half(xa.data(), cos.data(), sin.data(), half);
    ref.rotate_half(xb.data(), cos.data(), sin.data(), half);
    results["rotate_half"].cases++;
    for (int64_t i = 0; i < half; ++i) {
      const double m = std::fabs(x[i] * cos[i]) + std::fabs(x[i + half] * sin[i]);
      const double m2 = std::fabs(x[i + half] * cos[i]) + std::fabs(x[i] * sin[i]);
      expect_close("rotate_half", case_name(half, i), xa[i], xb[i], m, 3.0);
      expect_close("rotate_half", case_name(half, i + half), xa[i + half], xb[i + half], m2, 3.0);
    }
  }
}

void test_attention_ops(const VectorOps& neon, const VectorOps& ref, std::mt19937& rng) {
  for (int64_t d : {2, 6, 16, 28, 44, 64, 100, 128}) {  // every step of the loops over d: 16, 8, 4, 1
    for (int64_t length : {1, 3, 5, 17, 64, 1000}) {
      const int64_t stride = 3 * d + 2;  // a head's slice of a wider cache row
      const std::vector<float> q = normal_vector(d, 1.0f, rng);
      const std::vector<float> keys = normal_vector(length * stride, 1.0f, rng);
      const std::vector<float> values = normal_vector(length * stride, 1.0f, rng);
      const std::string what = "d=" + std::to_string(d) + " length=" + std::to_string(length);
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));

      std::vector<float> sa(static_cast<size_t>(length)), sb(static_cast<size_t>(length));
      neon.dot_rows(q.data(), keys.data(), stride, length, d, scale, sa.data());
      ref.dot_rows(q.data(), keys.data(), stride, length, d, scale, sb.data());
      results["dot_rows"].cases++;
      for (int64_t p = 0; p < length; ++p) {
        double m = 0.0;
        for (int64_t i = 0; i < d; ++i) m += std::fabs(double(q[i]) * keys[p * stride + i]);
        expect_close("dot_rows", what + " p=" + std::to_string(p), sa[p], sb[p], m * scale, double(d) + 16);
      }

      // the weights softmax gives, so that the sum is weighted as in attention
      std::vector<float> w = sb;
      ref.softmax(w.data(), length);
      std::vector<float> oa(static_cast<size_t>(d)), ob(static_cast<size_t>(d));
      neon.axpy_rows(w.data(), values.data(), stride, length, d, oa.data());
      ref.axpy_rows(w.data(), values.data(), stride, length, d, ob.data());
      results["axpy_rows"].cases++;
      for (int64_t i = 0; i < d; ++i) {
        double m = 0.0;
        for (int64_t p = 0; p < length; ++p) m += std::fabs(double(w[p]) * values[p * stride + i]);
        expect_close("axpy_rows", what + " i=" + std::to_string(i), oa[i], ob[i], m, double(length) + 16);
      }
    }
  }
}

void test_softmax(const VectorOps& neon, const VectorOps& ref, std::mt19937& rng) {
  auto check = [&](const std::vector<float>& x, const std::string& what) {
    const int64_t n = static_cast<int64_t>(x.size());
    std::vector<float> a = x, b = x;
    neon.softmax(a.data(), n);
    ref.softmax(b.data(), n);
    results["softmax"].cases++;
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      expect_close("softmax", what + " " + case_name(n, i), a[i], b[i], std::fabs(b[i]), double(n) + 16, 1e-44);
      total += a[i];
    }
    expect_close("softmax", what + " sum", total, 1.0, 1.0, double(n) + 16);
  };
  for (int64_t n : kLengths) {
    check(normal_vector(n, 4.0f, rng), "normal(0, 4)");
    // scores as far apart as attention's get and beyond: most exps underflow, some to subnormals
    std::vector<float> wide = normal_vector(n, 40.0f, rng);
    check(wide, "normal(0, 40)");
    // masked-out entries (-inf) among finite ones, and large equal values
    std::vector<float> masked = normal_vector(n, 2.0f, rng);
    for (int64_t i = 1; i < n; i += 3) masked[i] = -INFINITY;
    check(masked, "with -inf");
    check(std::vector<float>(static_cast<size_t>(n), 1e4f), "all 1e4");
    std::vector<float> edges = normal_vector(n, 1.0f, rng);
    const float values[] = {-100.0f, 0.0f, 88.0f, -1e30f, 87.9f};
    for (int64_t i = 0; i < n; ++i) edges[i] = values[i % 5];
    check(edges, "-100, 0, 88, -1e30, 87.9");
  }
}

void test_silu_mul(const VectorOps& neon, const VectorOps& ref, std::mt19937& rng) {
  for (int64_t n : kLengths) {
    std::vector<float> g = normal_vector(n, 4.0f, rng);
    const std::vector<float> u = normal_vector(n, 1.0f, rng);
    const float edges[] = {-100.0f, -88.0f, -87.0f, -20.0f, -1e-6f, 0.0f, 20.0f, 88.0f, 100.0f};
    for (int64_t i = 0; i < n; i += 2) g[i] = edges[(i / 2) % 9];
    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    neon.silu_mul(g.data(), u.data(), a.data(), n);
    ref.silu_mul(g.data(), u.data(), b.data(), n);
    results["silu_mul"].cases++;
    for (int64_t i = 0; i < n; ++i) expect_close("silu_mul", case_name(n, i), a[i], b[i], std::fabs(b[i]), 8.0, 1e-44);
  }
}

// The NEON exp against exp in double, rounded to fp32 (the correctly rounded result, but for ties).
void test_exp(const VectorOps& neon, std::mt19937& rng) {
  std::vector<float> x;
  const float edges[] = {-INFINITY, -1e30f, -105.0f, -104.0f, -103.9f, -100.0f, -88.0f, -87.4f, -87.3f, -10.0f,
                         -1.0f, -0.34657359f, -1e-7f, 0.0f, -0.0f, 1e-7f, 0.34657359f, 1.0f, 10.0f, 80.0f,
                         88.0f, 88.5f, 88.72f, 88.7228f, 88.73f, 89.0f, 100.0f, 1e30f, INFINITY, NAN};
  x.insert(x.end(), std::begin(edges), std::end(edges));
  std::uniform_real_distribution<float> wide(-104.0f, 89.0f), narrow(-1.0f, 1.0f);
  for (int i = 0; i < 200000; ++i) x.push_back(wide(rng));
  for (int i = 0; i < 100000; ++i) x.push_back(narrow(rng));
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> y(x.size());
  neon.exp(x.data(), y.data(), n);
  OpResult& r = results["exp (ulp vs double)"];
  r.cases = static_cast<int>(n);
  for (int64_t i = 0; i < n; ++i) {
    const double exact = std::exp(static_cast<double>(x[i]));
    const float want = static_cast<float>(exact);  // inf beyond FLT_MAX, 0 below half the least subnormal
    bool ok;
    double ulps = 0.0;
    if (std::isnan(x[i])) {
      ok = std::isnan(y[i]);
    } else if (std::isinf(want) || want == 0.0f || want == 1.0f) {
      ok = y[i] == want;
    } else if (want < FLT_MIN) {
      ok = std::fabs(y[i] - exact) <= std::ldexp(1.0, -149);
    } else {
      ulps = std::fabs(y[i] - exact) / std::ldexp(1.0, std::ilogb(want) - 23);
      ok = ulps <= 2.0;
    }
    r.worst = std::max(r.worst, ulps);
    if (!ok && ++r.failures <= 5) {
      std::printf("FAIL exp(%.9g) = %.9g, exp in double %.9g\n", x[i], y[i], exact);
    }
  }
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const VectorOps& neon = awq_edge::cpu::neon_vector_ops();
  const VectorOps& ref = awq_edge::cpu::portable_vector_ops();
  std::mt19937 rng(1234);
  test_norm_ops(neon, ref, rng);
  test_rotate_half(neon, ref, rng);
  test_attention_ops(neon, ref, rng);
  test_softmax(neon, ref, rng);
  test_silu_mul(neon, ref, rng);
  test_exp(neon, rng);
  int failures = 0;
  for (const auto& [op, r] : results) {
    std::printf("%-20s %7d cases, %d failed, largest error %.3g\n", op.c_str(), r.cases, r.failures, r.worst);
    failures += r.failures;
  }
  std::printf(failures == 0 ? "OK\n" : "FAILED\n");
  return failures == 0 ? 0 : 1;
}
