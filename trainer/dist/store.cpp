#include "trainer/dist/store.h"

#include <thread>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <c10/util/StringUtil.h>

#include "common/error.h"

namespace zsad::dist {

void wait_for_ranks(c10d::Store& store, int rank, int world_size, std::chrono::milliseconds timeout,
                    const std::string& where, const std::string& prefix) {
  store.set(prefix + std::to_string(rank), std::vector<uint8_t>{1});
  std::vector<std::string> keys;
  for (int r = 0; r < world_size; ++r) keys.push_back(prefix + std::to_string(r));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (store.check(keys)) return;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string missing;
  for (int r = 0; r < world_size; ++r) {
    if (!store.check({keys[r]})) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
  }
  throw Error("rendezvous at " + where + ": rank(s) " + missing + " of " + std::to_string(world_size) +
              " did not arrive within " + c10::str(timeout.count() / 1000.0) + " s (rank " +
              std::to_string(rank) + " waiting; check MASTER_ADDR/MASTER_PORT and that every rank was started)");
}

StorePtr connect_tcp_store(const DistEnv& env, std::chrono::milliseconds timeout) {
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  c10d::TCPStoreOptions o;
  o.port = static_cast<uint16_t>(env.master_port);
  o.isServer = env.rank == 0;
  o.numWorkers = env.world_size;
  o.waitWorkers = false;  // wait_for_ranks below names the ranks that are missing
  o.timeout = timeout;
  StorePtr store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
  } catch (const std::exception& e) {
    throw Error("rendezvous at " + where + " (rank " + std::to_string(env.rank) + " of " +
                std::to_string(env.world_size) + (env.rank == 0 ? ", hosting the store" : ", connecting") +
                "): " + e.what());
  }
  // With port 0 the server picked a free port: name the real one.
  const std::string bound = env.master_addr + ":" + std::to_string(static_cast<c10d::TCPStore&>(*store).getPort());
  wait_for_ranks(*store, env.rank, env.world_size, timeout, bound);
  return store;
}

StorePtr connect_file_store(const std::string& path, int rank, int world_size, std::chrono::milliseconds timeout) {
  StorePtr store;
  try {
    store = c10::make_intrusive<c10d::FileStore>(path, world_size);
  } catch (const std::exception& e) {
    throw Error("rendezvous through file store '" + path + "': " + e.what());
  }
  store->setTimeout(timeout);
  wait_for_ranks(*store, rank, world_size, timeout, "file store '" + path + "'");
  return store;
}

}  // namespace zsad::dist
