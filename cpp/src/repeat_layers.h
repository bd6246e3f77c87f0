// ModelOptions::repeat_layers, a benchmarking aid: a model whose one decoder layer is copied
// into N layers' places, so that a model too large for the disk or the host's memory as files
// (a Llama-3.3-70B shape: one layer is 1.7 GB of BF16, eighty are 131 GiB) can be measured from
// a one-layer directory. The map gains layers 1..N-1 as views of layer 0's tensors; Weights then
// copies every view into its own place in the arena, so each layer owns its bytes and every
// memory figure (the arena, the KV budget, engine.memory()) is that of N layers.
//
//   WeightMap tensors = to_weight_format(...);     // compressed (or decoded) once
//   repeat_layers(options.repeat_layers, path, config, tensors, &checksums);
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "model_source.h"
#include "slimrt/model.h"

namespace slimrt {

// Makes `config` a model of `layers` layers whose tensors (and stored checksums, if any) are
// those of its one layer. Throws kInvalidArgument ("WHERE: repeat_layers=N needs a model with
// one decoder layer; it has M") when config has more than one. `tensors` stays borrowed by
// the views it gains.
void repeat_layers(int64_t layers, const std::string& where, ModelConfig& config,
                   WeightMap& tensors, std::map<std::string, Df11Checksum>* checksums);

// What a model's summary says of it: "; one layer copied into N (repeat_layers)", or "" for 0.
std::string repeated_note(int64_t layers);

}  // namespace slimrt
