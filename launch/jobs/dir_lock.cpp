#include "launch/jobs/dir_lock.h"

#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "common/error.h"

namespace fs = std::filesystem;

namespace zsad::launch {

DirLock::DirLock(const std::string& dir, const std::string& file, const std::string& what) {
  const fs::path path = fs::path(dir) / file;
  fs::create_directories(path.parent_path());
  fd_ = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(path.string() + ": cannot create the lock file: " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      std::string holder;
      std::getline(std::ifstream(path), holder);
      ::close(fd_);
      fd_ = -1;
      throw Error(what + " '" + dir + "' is in use by another zsad process (" +
                  (holder.empty() ? std::string("holder unknown") : holder) + ", lock " + path.string() +
                  "); wait for it to end, or pass another directory");
    }
    std::cerr << "zsad: warning: " << path.string() << ": no file locks here (" << std::strerror(err)
              << "); nothing stops a second process from using " << dir << " at the same time\n";
    ::close(fd_);
    fd_ = -1;
    return;
  }
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  char when[32] = {0};
  const std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  const std::string text = "pid " + std::to_string(::getpid()) + " on " + host + ", since " + when + "\n";
  if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, text.data(), text.size(), 0) < 0) {
    // The lock holds without the note; the second driver's message then says "holder unknown".
  }
}

std::string dir_lock_holder(const std::string& dir, const std::string& file) {
  const fs::path path = fs::path(dir) / file;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";  // never locked
  std::string holder;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
    std::getline(std::ifstream(path), holder);
    if (holder.empty()) holder = "holder unknown";
  }
  ::close(fd);  // also drops the probe's own lock
  return holder;
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace zsad::launch
