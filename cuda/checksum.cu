// ops::crc32 on CUDA: each thread takes one piece of kPiece bytes, 16 at a time, through a
// 256-entry table in shared memory; the pieces' CRCs come back to the host and fold into one
// (crc32_of_pieces), the way crc32.cpp combines its threads' pieces. A piece per thread keeps
// the whole buffer in flight: 16 GB of weights are 250,000 pieces, about two waves of an H200.
#include <cuda_runtime.h>

#include <vector>

#include "check.h"
#include "crc32.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"

namespace slimrt::cuda {
namespace {

constexpr int64_t kPiece = int64_t{64} << 10;
constexpr int kThreads = 256;

__global__ void crc32_pieces_kernel(const uint8_t* data, int64_t bytes, int64_t pieces,
                                    uint32_t* out) {
  __shared__ uint32_t table[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) {
    uint32_t c = static_cast<uint32_t>(i);
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    table[i] = c;
  }
  __syncthreads();
  const int64_t piece = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (piece >= pieces) return;
  const int64_t begin = piece * kPiece;
  const int64_t end = begin + kPiece < bytes ? begin + kPiece : bytes;
  uint32_t crc = 0xFFFFFFFFu;
  int64_t at = begin;
  // Pieces start on kPiece boundaries of a 256-byte aligned block: 16-byte loads are aligned.
  const bool aligned = (reinterpret_cast<uintptr_t>(data) & 15) == 0;
  if (aligned) {
    for (; at + 16 <= end; at += 16) {
      const uint4 v = *reinterpret_cast<const uint4*>(data + at);
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int w = 0; w < 4; ++w) {
#pragma unroll
        for (int b = 0; b < 4; ++b) {
          crc = table[(crc ^ (words[w] >> (8 * b))) & 0xFF] ^ (crc >> 8);
        }
      }
    }
  }
  for (; at < end; ++at) crc = table[(crc ^ data[at]) & 0xFF] ^ (crc >> 8);
  out[piece] = crc ^ 0xFFFFFFFFu;
}

int64_t pieces_of(int64_t bytes) { return (bytes + kPiece - 1) / kPiece; }

}  // namespace

int64_t crc32_scratch_bytes(int64_t bytes) {
  return pieces_of(bytes) * static_cast<int64_t>(sizeof(uint32_t));
}

uint32_t crc32(CudaDevice& device, const void* data, int64_t bytes, void* scratch) {
  if (bytes == 0) return 0;
  const int64_t pieces = pieces_of(bytes);
  SLIMRT_CHECK(pieces <= int64_t{kThreads} * 0x7FFFFFFF, "crc32: " << bytes << " bytes");
  auto* out = static_cast<uint32_t*>(scratch);
  const int64_t blocks = (pieces + kThreads - 1) / kThreads;
  crc32_pieces_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, device.stream()>>>(
      static_cast<const uint8_t*>(data), bytes, pieces, out);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
  // Load time only (a model checking its weights): the host buffer is this call's.
  std::vector<uint32_t> crcs(pieces);
  device.copy_to_host(crcs.data(), out, pieces * static_cast<int64_t>(sizeof(uint32_t)));
  return crc32_of_pieces(crcs.data(), pieces, kPiece, bytes - (pieces - 1) * kPiece);
}

}  // namespace slimrt::cuda
