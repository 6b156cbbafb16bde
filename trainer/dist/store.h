#pragma once
// Rendezvous: the key-value store every rank meets at before any collective. A c10d TCPStore
// hosted by rank 0 for real jobs, a FileStore for in-process tests (ranks as threads).
#include <chrono>
#include <string>

#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "trainer/dist/env.h"

namespace zsad::dist {

using StorePtr = c10::intrusive_ptr<c10d::Store>;

// Connects to (rank 0: hosts) the TCPStore at env.master_addr:env.master_port and waits until all
// env.world_size ranks have arrived. Throws zsad::Error naming address:port and the ranks that did
// not arrive within `timeout`.
StorePtr connect_tcp_store(const DistEnv& env, std::chrono::milliseconds timeout);

// A FileStore at `path` shared by `world_size` ranks (threads or processes on one file system);
// waits for all ranks like connect_tcp_store.
StorePtr connect_file_store(const std::string& path, int rank, int world_size, std::chrono::milliseconds timeout);

// Every rank announces itself under `prefix` and waits for the others; `where` names the store in
// the error message ("127.0.0.1:29500").
void wait_for_ranks(c10d::Store& store, int rank, int world_size, std::chrono::milliseconds timeout,
                    const std::string& where, const std::string& prefix = "zsad/arrived/");

}  // namespace zsad::dist
