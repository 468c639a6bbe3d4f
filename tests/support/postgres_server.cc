#include "tests/support/postgres_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/test_util.h"

namespace dvrouter::testing {

namespace {

using Clock = std::chrono::steady_clock;

std::string FindBin() {
  std::string best;
  int best_version = -1;
  DIR* d = ::opendir("/usr/lib/postgresql");
  if (d == nullptr) return "";
  while (dirent* e = ::readdir(d)) {
    const int version = std::atoi(e->d_name);
    if (version <= 0) continue;
    const std::string bin = std::string("/usr/lib/postgresql/") + e->d_name + "/bin";
    if (::access((bin + "/initdb").c_str(), X_OK) != 0 ||
        ::access((bin + "/postgres").c_str(), X_OK) != 0) {
      continue;
    }
    // 15 (the version the project targets) first, else the newest.
    const int rank = version == 15 ? 1000 : version;
    if (rank > best_version) {
      best_version = rank;
      best = bin;
    }
  }
  ::closedir(d);
  return best;
}

// Whether postmaster.pid names `pid` and says it accepts connections (its first line is the
// postmaster's pid, its eighth the status, "ready" once it accepts connections).
bool Ready(const std::string& pid_file, pid_t pid) {
  std::ifstream in(pid_file);
  std::string line;
  for (int i = 1; i <= 8 && std::getline(in, line); ++i) {
    if (i == 1 && line != std::to_string(pid)) return false;
    if (i == 8) return line.rfind("ready", 0) == 0;
  }
  return false;
}

std::string Tail(const std::string& path, size_t max = 2000) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max ? s.substr(s.size() - max) : s;
}

// Children of `parent`, from /proc/<pid>/stat (field 4 is the parent pid).
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    const pid_t pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/stat");
    std::string stat;
    std::getline(in, stat);
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == parent) {
      out.push_back(pid);
    }
  }
  ::closedir(d);
  return out;
}

// Gone or a zombie (a zombie holds no memory, shared or not).
bool Gone(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return true;
  const size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

// waitpid with a deadline; the exit status, or -1 on timeout.
int WaitExit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return 0;  // not our child any more
    if (Clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Removes the System V shared memory segment named in a stale postmaster.pid (line 7: key and
// id), if it still has that key and nobody is attached. A server that was killed and never
// restarted leaves it behind; the next postmaster would remove it, but there is none.
void RemoveStaleSharedMemory(const std::string& pid_file) {
  std::ifstream in(pid_file);
  std::string line;
  for (int i = 0; i < 7 && std::getline(in, line); ++i) {
  }
  unsigned long key = 0, id = 0;  // written as %lu
  if (!in || std::sscanf(line.c_str(), "%lu %lu", &key, &id) != 2 || id > INT_MAX) return;
  shmid_ds ds{};
  if (::shmctl(static_cast<int>(id), IPC_STAT, &ds) == 0 &&
      static_cast<unsigned long>(ds.shm_perm.__key) == key && ds.shm_nattch == 0) {
    ::shmctl(static_cast<int>(id), IPC_RMID, nullptr);
  }
}

// NOTICEs (DROP ... IF EXISTS and the like) are not the test's output.
void IgnoreNotice(void*, const char*) {}

}  // namespace

bool PostgresServer::Available(std::string* why) {
  if (!FindBin().empty()) return true;
  *why = "no PostgreSQL server binaries under /usr/lib/postgresql (Debian package postgresql-15)";
  return false;
}

PostgresServer::PostgresServer(bool fsync, std::string tls_cert_pem, std::string tls_key_pem,
                               uint16_t first_port)
    : fsync_(fsync), tls_(!tls_cert_pem.empty()) {
  bin_ = FindBin();
  if (bin_.empty()) {
    Fail("PostgreSQL server binaries not found");
    return;
  }
  std::string tmpl = "/tmp/dvrouter-pg-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    Fail("mkdtemp failed");
    return;
  }
  root_ = tmpl;
  if (::geteuid() == 0) {
    passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) pw = ::getpwnam("nobody");
    if (pw == nullptr) {
      Fail("running as root and neither a postgres nor a nobody user exists");
      return;
    }
    drop_ = true;
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    if (::chown(root_.c_str(), uid_, gid_) != 0) {
      Fail("chown " + root_ + ": " + std::strerror(errno));
      return;
    }
  }
  ::mkdir((root_ + "/sock").c_str(), 0700);
  if (drop_ && ::chown((root_ + "/sock").c_str(), uid_, gid_) != 0) {
    Fail("chown sock: " + std::string(std::strerror(errno)));
    return;
  }
  if (tls_) {
    // The key must belong to the server's user and be private to it.
    for (auto [name, pem] :
         {std::pair{"/server.crt", &tls_cert_pem}, {"/server.key", &tls_key_pem}}) {
      const std::string path = root_ + name;
      WriteFileOrDie(path, *pem);
      if (::chmod(path.c_str(), 0600) != 0 || (drop_ && ::chown(path.c_str(), uid_, gid_) != 0)) {
        Fail("cannot install " + path + ": " + std::strerror(errno));
        return;
      }
    }
  }
  if (!RunAsServerUser({bin_ + "/initdb", "-D", root_ + "/data", "-U", "dvrouter", "--auth=trust",
                        "-E", "UTF8", "--no-locale", "--no-sync"},
                       root_ + "/initdb.log")) {
    return;
  }
  // docs/testing.md, "Ports": a port can be taken between its choice and the bind.
  for (int attempt = 1;; ++attempt) {
    port_ = attempt == 1 && first_port != 0 ? first_port : FreeLoopbackPort();
    if (port_ == 0) {
      Fail("no free port");
      return;
    }
    if (Start()) break;
    if (error_.find("could not bind") == std::string::npos || attempt == 3) return;
    ::unlink((root_ + "/server.log").c_str());  // the next attempt's error shows its own log
  }
  QueryResult created = [&] {
    QueryResult r;
    PGconn* pg = PQconnectdb(
        ("host=127.0.0.1 port=" + std::to_string(port_) + " user=dvrouter dbname=postgres")
            .c_str());
    PGresult* res = PQexec(pg, "CREATE DATABASE dvrouter");
    r.ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    r.error = PQerrorMessage(pg);
    PQclear(res);
    PQfinish(pg);
    return r;
  }();
  if (!created.ok) {
    Fail("CREATE DATABASE: " + created.error + "server log: " + Tail(root_ + "/server.log"));
    return;
  }
  ok_ = true;
}

PostgresServer::~PostgresServer() {
  Stop();
  if (!root_.empty()) {
    RemoveStaleSharedMemory(root_ + "/data/postmaster.pid");
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
}

bool PostgresServer::Fail(const std::string& what) {
  ok_ = false;
  error_ = what;
  return false;
}

std::string PostgresServer::ConnInfo() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=dvrouter dbname=dvrouter";
}

std::string PostgresServer::AdapterYaml(const std::string& name, const std::string& extra) const {
  return "  " + name +
         ":\n"
         "    type: postgres\n"
         "    host: 127.0.0.1\n"
         "    port: " +
         std::to_string(port_) +
         "\n"
         "    dbname: dvrouter\n"
         "    user: dvrouter\n"
         "    sslmode: disable\n" +
         extra;
}

pid_t PostgresServer::Spawn(const std::vector<std::string>& argv, const std::string& log) {
  // Everything the child needs is prepared before fork (the parent may have threads).
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return -1;
  if (drop_ && ::fchown(log_fd, uid_, gid_) != 0) {
    ::close(log_fd);
    return -1;
  }
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int open_max = static_cast<int>(std::clamp(::sysconf(_SC_OPEN_MAX), 1024L, 65536L));
  const bool drop = drop_;
  const uid_t uid = uid_;
  const gid_t gid = gid_;
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    // Nothing else of the test process (its sockets, files) may live on in the server.
    if (::close_range(3, ~0U, 0) != 0) {
      for (int fd = 3; fd < open_max; ++fd) ::close(fd);
    }
    if (drop && (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0)) {
      ::_exit(126);
    }
    // If the test process dies without stopping the server (a crash, an abort), the postmaster
    // gets SIGQUIT: immediate shutdown, its backends included. Set after setuid, which clears
    // it; a parent that is already gone is caught by the getppid check.
    if (::prctl(PR_SET_PDEATHSIG, SIGQUIT) != 0 || ::getppid() != parent) ::_exit(125);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);
  return pid;
}

bool PostgresServer::RunAsServerUser(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = Spawn(argv, log);
  if (pid < 0) return Fail("cannot start " + argv[0]);
  const int status = WaitExit(pid, std::chrono::seconds(120));
  if (status == -1) {
    ::kill(pid, SIGKILL);
    WaitExit(pid, std::chrono::seconds(10));
    return Fail(argv[0] + " timed out: " + Tail(log));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Fail(argv[0] + " failed (status " + std::to_string(status) + "): " + Tail(log));
  }
  return true;
}

bool PostgresServer::Start() {
  if (pid_ > 0) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return true;  // still running
    pid_ = -1;  // exited on its own: start a new one
  }
  std::vector<std::string> argv = {bin_ + "/postgres",           "-D", root_ + "/data",        "-p",
                                   std::to_string(port_),        "-k", root_ + "/sock",        "-c",
                                   "listen_addresses=127.0.0.1", "-c", "max_connections=60",   "-c",
                                   "shared_buffers=64MB",        "-c", "logging_collector=off"};
  if (tls_) {
    argv.insert(argv.end(), {"-c", "ssl=on", "-c", "ssl_cert_file=" + root_ + "/server.crt", "-c",
                             "ssl_key_file=" + root_ + "/server.key"});
  }
  if (!fsync_) {
    argv.insert(argv.end(), {"-c", "fsync=off", "-c", "full_page_writes=off"});
  }
  const std::string log = root_ + "/server.log";
  pid_ = Spawn(argv, log);
  if (pid_ < 0) return Fail("cannot start postgres");
  const std::string ping = "host=127.0.0.1 port=" + std::to_string(port_) +
                           " user=dvrouter dbname=postgres connect_timeout=2";
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    // Ready is our postmaster's word (its postmaster.pid), not the answer of whatever listens on
    // the port; connect_timeout bounds a ping to a listener that never answers.
    if (PQping(ping.c_str()) == PQPING_OK && Ready(root_ + "/data/postmaster.pid", pid_)) {
      ok_ = true;
      return true;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Fail("postgres exited at start: " + Tail(log));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Kill();
  return Fail("postgres did not accept connections within 60 s: " + Tail(log));
}

void PostgresServer::Kill() {
  if (pid_ <= 0) return;
  // Stopped, the postmaster forks no new backend while its children are listed, and cannot reap
  // them: their pids stay theirs (zombies at worst) until it dies, so no other process is hit.
  ::kill(pid_, SIGSTOP);
  const std::vector<pid_t> backends = ChildrenOf(pid_);
  for (pid_t b : backends) ::kill(b, SIGKILL);
  // The next postmaster refuses to start while an old backend still holds the shared memory.
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  for (pid_t b : backends) {
    while (!Gone(b) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  ::kill(pid_, SIGKILL);
  WaitExit(pid_, std::chrono::seconds(30));
  pid_ = -1;
}

void PostgresServer::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGINT);  // fast shutdown
  if (WaitExit(pid_, std::chrono::seconds(30)) == -1) {
    Kill();
    return;
  }
  pid_ = -1;
}

PostgresServer::QueryResult PostgresServer::Query(const std::string& sql) const {
  QueryResult r;
  PGconn* pg = PQconnectdb(ConnInfo().c_str());
  if (PQstatus(pg) != CONNECTION_OK) {
    r.error = PQerrorMessage(pg);
    PQfinish(pg);
    return r;
  }
  PQsetNoticeProcessor(pg, IgnoreNotice, nullptr);
  PGresult* res = PQexec(pg, sql.c_str());
  const ExecStatusType st = PQresultStatus(res);
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
    r.ok = true;
    for (int i = 0; i < PQntuples(res); ++i) {
      std::vector<std::optional<std::string>> row;
      for (int j = 0; j < PQnfields(res); ++j) {
        if (PQgetisnull(res, i, j)) {
          row.emplace_back(std::nullopt);
        } else {
          row.emplace_back(PQgetvalue(res, i, j));
        }
      }
      r.rows.push_back(std::move(row));
    }
  } else {
    r.error = res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(pg);
  }
  PQclear(res);
  PQfinish(pg);
  return r;
}

}  // namespace dvrouter::testing
