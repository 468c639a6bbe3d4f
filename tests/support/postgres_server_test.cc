// The PostgreSQL test server itself: committed rows survive a SIGKILL of the postmaster and its
// backends and a restart on the same directory; errors carry the server's message; the server
// holds none of the test's descriptors; destruction stops the server and removes its directory,
// also after a kill.
#include "tests/support/postgres_server.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/shm.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::PostgresServer;

// Exited (reaped or a zombie): holds no shared memory.
bool Gone(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return true;
  const size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

// The postmaster's working directory is its data directory.
std::filesystem::path DataDir(pid_t postmaster) {
  std::error_code ec;
  return std::filesystem::read_symlink("/proc/" + std::to_string(postmaster) + "/cwd", ec);
}

TEST(PostgresServerTest, CommittedRowSurvivesKillAndRestart) {
  std::string why;
  if (!PostgresServer::Available(&why)) GTEST_SKIP() << why;
  PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.error();
  EXPECT_GT(pg.pid(), 0);
  EXPECT_NE(pg.port(), 0);
  EXPECT_EQ(pg.ConnInfo(),
            "host=127.0.0.1 port=" + std::to_string(pg.port()) + " user=dvrouter dbname=dvrouter");

  auto r = pg.Query("CREATE TABLE t (id int PRIMARY KEY, v text)");
  ASSERT_TRUE(r.ok) << r.error;
  r = pg.Query("INSERT INTO t VALUES (1, 'kept'), (2, NULL)");
  ASSERT_TRUE(r.ok) << r.error;

  // A backend of our own, open across the kill: it must die with the postmaster.
  PGconn* held = PQconnectdb(pg.ConnInfo().c_str());
  ASSERT_EQ(PQstatus(held), CONNECTION_OK) << PQerrorMessage(held);
  const pid_t backend = PQbackendPID(held);
  ASSERT_GT(backend, 0);
  const pid_t first = pg.pid();

  pg.Kill();
  EXPECT_EQ(pg.pid(), -1);
  EXPECT_TRUE(Gone(first));
  EXPECT_TRUE(Gone(backend));
  EXPECT_FALSE(pg.Query("SELECT 1").ok);
  PQfinish(held);

  ASSERT_TRUE(pg.Start()) << pg.error();
  EXPECT_GT(pg.pid(), 0);
  r = pg.Query("SELECT id, v FROM t ORDER BY id");
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.rows[0][0], "1");
  EXPECT_EQ(r.rows[0][1], "kept");
  EXPECT_EQ(r.rows[1][0], "2");
  EXPECT_EQ(r.rows[1][1], std::nullopt);  // NULL

  // Killed twice in a row, with no query in between, it still restarts.
  pg.Kill();
  ASSERT_TRUE(pg.Start()) << pg.error();
  EXPECT_TRUE(pg.Start());  // running: nothing to do

  pg.Stop();
  EXPECT_EQ(pg.pid(), -1);
  pg.Stop();  // idempotent
  EXPECT_FALSE(pg.Query("SELECT 1").ok);
}

TEST(PostgresServerTest, QueryErrorCarriesServerMessage) {
  std::string why;
  if (!PostgresServer::Available(&why)) GTEST_SKIP() << why;
  PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.error();

  auto r = pg.Query("SELEC 1");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("syntax error"), std::string::npos) << r.error;
  EXPECT_TRUE(r.rows.empty());

  r = pg.Query("SELECT * FROM missing_table");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("\"missing_table\" does not exist"), std::string::npos) << r.error;

  // The server is unharmed, and DROP ... IF EXISTS (a NOTICE) is a success.
  r = pg.Query("DROP TABLE IF EXISTS missing_table");
  EXPECT_TRUE(r.ok) << r.error;
  r = pg.Query("SELECT current_database(), current_user, NULL::text");
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.rows.size(), 1u);
  ASSERT_EQ(r.rows[0].size(), 3u);
  EXPECT_EQ(r.rows[0][0], "dvrouter");
  EXPECT_EQ(r.rows[0][1], "dvrouter");
  EXPECT_FALSE(r.rows[0][2].has_value());
}

TEST(PostgresServerTest, ServerInheritsNoDescriptorOfTheTest) {
  std::string why;
  if (!PostgresServer::Available(&why)) GTEST_SKIP() << why;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);  // not close-on-exec
  std::error_code ec;
  const auto pipe = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fds[1]), ec);
  PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.error();
  int seen = 0;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pg.pid()) + "/fd")) {
    ++seen;
    EXPECT_NE(std::filesystem::read_symlink(e.path(), ec), pipe) << e.path();
  }
  EXPECT_GT(seen, 0);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(PostgresServerTest, DestructionStopsServerAndRemovesDirectory) {
  std::string why;
  if (!PostgresServer::Available(&why)) GTEST_SKIP() << why;
  std::filesystem::path dir;
  pid_t postmaster = -1;
  std::string conninfo;
  {
    PostgresServer pg;
    ASSERT_TRUE(pg.ok()) << pg.error();
    postmaster = pg.pid();
    conninfo = pg.ConnInfo();
    dir = DataDir(postmaster);
    ASSERT_TRUE(std::filesystem::exists(dir / "PG_VERSION")) << dir;
  }
  EXPECT_TRUE(Gone(postmaster));
  EXPECT_FALSE(std::filesystem::exists(dir.parent_path())) << dir;
  EXPECT_EQ(PQping(conninfo.c_str()), PQPING_NO_RESPONSE);
}

TEST(PostgresServerTest, DestructionAfterKillReleasesSharedMemory) {
  std::string why;
  if (!PostgresServer::Available(&why)) GTEST_SKIP() << why;
  std::filesystem::path dir;
  int shmid = -1;
  {
    PostgresServer pg;
    ASSERT_TRUE(pg.ok()) << pg.error();
    dir = DataDir(pg.pid());
    pg.Kill();
    // The stale postmaster.pid names the System V segment (line 7: key, id).
    std::ifstream in(dir / "postmaster.pid");
    std::string line;
    for (int i = 0; i < 7; ++i) std::getline(in, line);
    unsigned long key = 0, id = 0;
    ASSERT_EQ(std::sscanf(line.c_str(), "%lu %lu", &key, &id), 2) << line;
    shmid = static_cast<int>(id);
    shmid_ds ds{};
    ASSERT_EQ(::shmctl(shmid, IPC_STAT, &ds), 0);
    EXPECT_EQ(ds.shm_nattch, 0u);
  }
  shmid_ds ds{};
  EXPECT_EQ(::shmctl(shmid, IPC_STAT, &ds), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_FALSE(std::filesystem::exists(dir.parent_path())) << dir;
}

// A port taken between its choice and the postmaster's bind (here by a listener of the test's
// own) costs an attempt, not the test: the server starts on another port.
TEST(PostgresServerTest, APortTakenBeforeTheServerBindsItIsReplacedByAnother) {
  std::string why;
  if (!PostgresServer::Available(&why)) GTEST_SKIP() << why;
  const uint16_t taken = testing::FreeLoopbackPort();
  ASSERT_NE(taken, 0);
  const struct Held {
    int fd;
    ~Held() {
      if (fd >= 0) ::close(fd);
    }
  } listener{testing::ListenOnLoopback(taken)};
  ASSERT_GE(listener.fd, 0);
  PostgresServer pg(false, "", "", taken);
  ASSERT_TRUE(pg.ok()) << pg.error();
  EXPECT_NE(pg.port(), taken);
  EXPECT_NE(pg.port(), 0);
  const auto r = pg.Query("SELECT 1");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.rows.at(0).at(0), "1");
}

}  // namespace
}  // namespace dvrouter
