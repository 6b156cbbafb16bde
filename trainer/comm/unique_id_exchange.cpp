#include "trainer/comm/unique_id_exchange.h"

#include <thread>

#include <c10/util/StringUtil.h>

#include "common/error.h"

namespace zsad::comm {

std::vector<uint8_t> exchange_unique_id(c10d::Store& store, int rank, const std::string& key,
                                        const std::function<std::vector<uint8_t>()>& make,
                                        std::chrono::milliseconds timeout) {
  if (rank == 0) {
    std::vector<uint8_t> id = make();
    store.set(key, id);
    return id;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!store.check({key})) {
    if (std::chrono::steady_clock::now() >= deadline) {
      throw Error("rank " + std::to_string(rank) + ": rank 0 did not publish '" + key + "' in the rendezvous store within " +
                  c10::str(timeout.count() / 1000.0) + " s (rank 0 missing or failed before creating its communicator)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return store.get(key);
}

}  // namespace zsad::comm
