// complete.cpp: the smallest embedding of the engine: greedy completion of a prompt.
//
//   complete MODEL.awqe "PROMPT" [MAX_NEW_TOKENS]
#include <cstdlib>
#include <iostream>

#include <awq_edge/generator.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: complete MODEL.awqe PROMPT [MAX_NEW_TOKENS]\n";
    return 2;
  }
  try {
    awq_edge::Generator generator(argv[1]);
    awq_edge::GenerationOptions options;
    options.sampling.temperature = 0.0f;  // greedy
    options.max_new_tokens = argc > 3 ? std::atoi(argv[3]) : 32;
    const awq_edge::GenerationResult result = generator.generate(generator.tokenize(argv[2]), options);
    std::cout << result.text << "\n";
    std::cerr << result.tokens.size() << " tokens, finish: "
              << awq_edge::finish_reason_name(result.finish_reason) << "\n";
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
