#pragma once
// Shares a communicator bootstrap id (NCCL's ncclUniqueId) through the rendezvous store: rank 0
// creates it, everyone else waits for the key. Kept apart from nccl_communicator.cpp so it is
// compiled and unit-tested on machines without CUDA.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/Store.hpp>

namespace zsad::comm {

// Rank 0 calls make() and publishes the bytes under `key`; other ranks wait up to `timeout` and
// return the same bytes. Throws zsad::Error naming the key when rank 0 never publishes.
std::vector<uint8_t> exchange_unique_id(c10d::Store& store, int rank, const std::string& key,
                                        const std::function<std::vector<uint8_t>()>& make,
                                        std::chrono::milliseconds timeout);

}  // namespace zsad::comm
