// awq_edge_run.cpp: `awq-edge-run`, the native command-line generator (no Python).
//
//   awq-edge-run model.awqe -p "Once upon a time" -n 64 [--temperature 0.8 --seed 1] [--stats]
//
// Streams the generated text to stdout; --stats prints token counts and speeds to stderr.
// Chat templates are Jinja and live in Python: use `awq-edge chat` for instruction-tuned models.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "awq_edge/generator.h"

namespace {

const char* kUsage =
    "usage: awq-edge-run MODEL.awqe -p PROMPT [options]\n"
    "  -p, --prompt TEXT          the prompt (required)\n"
    "  -n, --max-new-tokens N     tokens to generate (default 256)\n"
    "  --temperature T            0 = greedy (default)\n"
    "  --top-k K  --top-p P  --min-p P  --repetition-penalty R\n"
    "  --seed S                   same seed + same prompt = same text (default 0)\n"
    "  --stop TEXT                stop string (repeatable)\n"
    "  --ignore-eos               keep generating past end-of-sequence tokens\n"
    "  --backend NAME             auto (default), cuda (NVIDIA GPU builds), neon (aarch64 builds) or cpu\n"
    "  --threads N                CPU threads (default: physical cores)\n"
    "  --kernels NAME             CPU kernels: auto (default), reference, avx2, neon, neon-int8, ...\n"
    "  --max-context N            KV cache positions (default: the model's, at most 4096)\n"
    "  --no-verify                skip the tensor checksums while loading\n"
    "  --stats                    print token counts and tokens/s to stderr\n";

[[noreturn]] void usage_error(const std::string& problem) {
  std::cerr << "awq-edge-run: " << problem << "\n" << kUsage;
  std::exit(2);
}

double number(const char* option, const char* text) {
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0') usage_error(std::string(option) + " expects a number, got '" + text + "'");
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path, prompt;
  bool have_prompt = false, stats = false;
  awq_edge::GeneratorOptions options;
  awq_edge::GenerationOptions generation;
  generation.sampling.temperature = 0.0f;
  generation.sampling.seed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") { std::cout << kUsage; return 0; }
    else if (arg == "-p" || arg == "--prompt") { prompt = value(); have_prompt = true; }
    else if (arg == "-n" || arg == "--max-new-tokens") generation.max_new_tokens = static_cast<int64_t>(number(arg.c_str(), value()));
    else if (arg == "--temperature") generation.sampling.temperature = static_cast<float>(number(arg.c_str(), value()));
    else if (arg == "--top-k") generation.sampling.top_k = static_cast<int32_t>(number(arg.c_str(), value()));
    else if (arg == "--top-p") generation.sampling.top_p = static_cast<float>(number(arg.c_str(), value()));
    else if (arg == "--min-p") generation.sampling.min_p = static_cast<float>(number(arg.c_str(), value()));
    else if (arg == "--repetition-penalty") generation.sampling.repetition_penalty = static_cast<float>(number(arg.c_str(), value()));
    else if (arg == "--seed") generation.sampling.seed = std::strtoull(value(), nullptr, 10);
    else if (arg == "--stop") generation.stop_strings.emplace_back(value());
    else if (arg == "--ignore-eos") generation.ignore_eos = true;
    else if (arg == "--backend") options.backend = value();
    else if (arg == "--kernels") options.backend_options.kernels = value();
    else if (arg == "--threads") options.backend_options.threads = static_cast<int>(number(arg.c_str(), value()));
    else if (arg == "--max-context") options.model_options.max_context = static_cast<int64_t>(number(arg.c_str(), value()));
    else if (arg == "--no-verify") options.verify_checksums = false;
    else if (arg == "--stats") stats = true;
    else if (!arg.empty() && arg[0] == '-') usage_error("unknown option " + arg);
    else if (path.empty()) path = arg;
    else usage_error("more than one model file: '" + path + "' and '" + arg + "'");
  }
  if (path.empty()) usage_error("no model file given");
  if (!have_prompt) usage_error("no prompt given (-p TEXT)");

  try {
    awq_edge::Generator generator(path, options);
    const awq_edge::GenerationResult result = generator.generate(
        generator.tokenize(prompt), generation, [](std::string_view piece) {
          std::cout << piece << std::flush;
          return true;
        });
    std::cout << "\n";
    if (stats) {
      const awq_edge::GenerationStats& s = result.stats;
      const int64_t prefilled = s.prompt_tokens - s.cached_tokens;
      std::cerr << "[" << generator.backend().description() << "] load " << generator.load_seconds()
                << " s, prompt " << s.prompt_tokens << " tokens (" << prefilled / s.prefill_seconds
                << " tokens/s), generated " << s.generated_tokens << " ("
                << (s.generated_tokens > 1 ? (s.generated_tokens - 1) / s.decode_seconds : 0.0)
                << " tokens/s), finish: " << awq_edge::finish_reason_name(result.finish_reason) << "\n";
    }
  } catch (const std::exception& error) {
    std::cerr << "awq-edge-run: error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
