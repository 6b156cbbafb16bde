#pragma once
// SIGTERM, SIGINT and SIGUSR2 only set a flag (the handler does nothing else); the training loop
// reads it at step boundaries, the ranks agree through an allreduce(max), save a checkpoint and exit
// with kExitStoppedResumable (platform.md §2.4). SIGUSR1 is left alone: NCCL may use it.
#include <csignal>

namespace zsad::trainer {

// Installs the handlers (idempotent). A second SIGINT restores the default action, so Ctrl-C twice
// still ends a wedged process.
void install_stop_handlers();
bool stop_requested();
int stop_signal();         // the signal that set the flag, 0 when none
void clear_stop_request();  // tests

}  // namespace zsad::trainer
