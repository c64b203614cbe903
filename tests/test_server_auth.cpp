// The API key: its sources (--api-key, --api-key-file, $LAZYLLM_API_KEY) and their precedence,
// the comparison, and, against `lazyllm serve` run as a process, that a key from the
// environment or a file is enforced and appears in no output.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <regex>
#include <thread>

#include "cli_runner.h"
#include "lazyllm/error.h"
#include "model/gen_model.h"
#include "server/api_key.h"
#include "test_util.h"

extern char** environ;

namespace lazyllm::server {
namespace {

std::string error_of(const ApiKeySources& s) {
  try {
    resolve_api_key(s);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string write_file(const std::string& name, const std::string& text) {
  const auto path = test::temp_path(name).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(ServerAuth, KeySourcesAndPrecedence) {
  EXPECT_EQ(resolve_api_key({}).key, "");
  EXPECT_EQ(resolve_api_key({.env = "from-env"}).key, "from-env");
  EXPECT_EQ(resolve_api_key({.env = "from-env"}).source, "LAZYLLM_API_KEY");
  // Flags win over the environment.
  EXPECT_EQ(resolve_api_key({.flag = "from-flag", .env = "from-env"}).key, "from-flag");
  const std::string file = write_file("key.txt", "from-file \t\r\n\nsecond line\n");
  const ResolvedApiKey k = resolve_api_key({.file = file, .env = "from-env"});
  EXPECT_EQ(k.key, "from-file");  // first line, trailing whitespace dropped
  EXPECT_EQ(k.source, "--api-key-file " + file);
  EXPECT_EQ(resolve_api_key({.file = write_file("key2.txt", "no-newline")}).key, "no-newline");
  // Both flags: refused rather than guessed.
  EXPECT_NE(error_of({.flag = "a", .file = file}).find("exclude each other"), std::string::npos);
}

TEST(ServerAuth, BadKeySourcesAreClearErrorsThatDoNotShowTheKey) {
  const std::string missing = test::temp_path("no-such-key-file").string();
  EXPECT_NE(error_of({.file = missing}).find("cannot read --api-key-file " + missing), std::string::npos);
  const std::string dir = test::temp_path("").string();
  EXPECT_NE(error_of({.file = dir}).find("--api-key-file"), std::string::npos);  // a directory reads nothing
  for (const char* text : {"", "\n", "   \r\n", "\nkey-on-line-two\n"}) {
    const std::string e = error_of({.file = write_file("empty.txt", text)});
    EXPECT_NE(e.find("empty"), std::string::npos) << e;
    EXPECT_EQ(e.find("key-on-line-two"), std::string::npos) << e;
  }
  EXPECT_NE(error_of({.env = ""}).find("LAZYLLM_API_KEY gives an empty API key"), std::string::npos);
  EXPECT_NE(error_of({.flag = ""}).find("--api-key gives an empty API key"), std::string::npos);
  const std::string e = error_of({.file = write_file("ctl.txt", "secret\x01part\n")});
  EXPECT_NE(e.find("control characters"), std::string::npos) << e;
  EXPECT_EQ(e.find("secret"), std::string::npos) << e;
}

TEST(ServerAuth, BearerComparison) {
  const std::string key = "sk-0123456789abcdef";
  EXPECT_TRUE(bearer_matches("Bearer " + key, key));
  EXPECT_TRUE(bearer_matches("bearer " + key, key));  // the scheme is case-insensitive (RFC 7235)
  EXPECT_TRUE(bearer_matches("BEARER  " + key + " ", key));
  for (const std::string& wrong : {std::string(""), std::string("Bearer"), std::string("Bearer "), "Basic " + key,
                                   "Bearer " + key.substr(0, key.size() - 1), "Bearer " + key + "x",
                                   std::string("Bearer sk-0123456789abcdeF"), "Bearer " + key.substr(1), "Bearer x" + key})
    EXPECT_FALSE(bearer_matches(wrong, key)) << wrong;
  EXPECT_FALSE(bearer_matches("Bearer ", ""));  // no key never matches (the server does not ask then)
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("ab", "abc"));
  EXPECT_FALSE(constant_time_equal("abcd", "abc"));
  EXPECT_FALSE(constant_time_equal(std::string("ab\0", 3), "ab"));
}

// `lazyllm serve` in a child process with a chosen environment; stderr goes to a file.
class ServeProcess {
 public:
  ServeProcess(const std::string& name, const std::vector<std::string>& args, const std::string& env_key,
               bool set_env) {
    log_ = test::temp_path(name + ".log").string();
    std::vector<std::string> argv_s = {LAZYLLM_CLI_PATH, "serve", "-m", model_path(), "--port", "0", "--threads", "1"};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<std::string> env_s;
    for (char** e = environ; *e; ++e)
      if (std::string(*e).rfind("LAZYLLM_API_KEY=", 0) != 0) env_s.push_back(*e);
    if (set_env) env_s.push_back("LAZYLLM_API_KEY=" + env_key);
    std::vector<char*> argv, envp;
    for (auto& s : argv_s) argv.push_back(s.data());
    for (auto& s : env_s) envp.push_back(s.data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(fd);
    const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 600 && port_ == 0; ++i) {
      std::smatch m;
      const std::string text = log();
      if (std::regex_search(text, m, listening)) port_ = std::stoi(m[1]);
      else std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~ServeProcess() { stop(); }
  int stop() {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return exit_code_;
  }
  int port() const { return port_; }
  std::string log() const { return test::slurp(log_); }
  std::string cmdline() const { return test::slurp("/proc/" + std::to_string(pid_) + "/cmdline"); }
  // Status of GET /v1/models with this Authorization header ("" = none); bodies go to `bodies`.
  int models(const std::string& authorization, std::string& bodies) const {
    httplib::Client c("127.0.0.1", port_);
    httplib::Headers h;
    if (!authorization.empty()) h.emplace("Authorization", authorization);
    auto res = c.Get("/v1/models", h);
    if (!res) return -1;
    bodies += res->body;
    return res->status;
  }

  static std::string model_path() {
    static const std::string path = [] {
      GenModelOptions o;
      o.spec = {"server_auth", "llama", 32, 1, 2, 2, 32, 512, 64, false, 10000.0f, false};
      o.threads = 1;
      const std::string p = test::temp_path("server_auth.gguf").string();
      generate_model(o, p);
      return p;
    }();
    return path;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
  int exit_code_ = -1;
};

TEST(ServerAuth, KeyFromEnvironmentOrFileIsEnforcedAndNeverShown) {
  const std::string env_key = "env-key-5f3a9c", file_key = "file-key-81d2e7", flag_key = "flag-key-a4c1";
  const std::string key_file = write_file("serve-key.txt", file_key + "\n");
  struct Case {
    std::string name;
    std::vector<std::string> args;
    bool set_env;
    std::string good, source;
  };
  const std::vector<Case> cases = {
      {"env", {}, true, env_key, "LAZYLLM_API_KEY"},
      {"file", {"--api-key-file", key_file}, false, file_key, "--api-key-file"},
      {"file-over-env", {"--api-key-file", key_file}, true, file_key, "--api-key-file"},
      {"flag-over-env", {"--api-key", flag_key}, true, flag_key, "--api-key"},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.name);
    ServeProcess p("serve-" + k.name, k.args, env_key, k.set_env);
    ASSERT_GT(p.port(), 0) << p.log();
    std::string bodies;
    EXPECT_EQ(p.models("", bodies), 401);
    EXPECT_EQ(p.models("Bearer wrong", bodies), 401);
    EXPECT_EQ(p.models("Bearer " + k.good.substr(0, k.good.size() - 1), bodies), 401);
    if (k.good != env_key) {
      EXPECT_EQ(p.models("Bearer " + env_key, bodies), 401);  // the flag's key wins
    }
    EXPECT_EQ(p.models("Bearer " + k.good, bodies), 200);
    if (k.source != "--api-key") {
      EXPECT_EQ(p.cmdline().find(k.good), std::string::npos);
    }
    EXPECT_EQ(p.stop(), 0);
    const std::string log = p.log();
    EXPECT_NE(log.find("API key: from " + k.source), std::string::npos) << log;
    for (const std::string& key : {env_key, file_key, flag_key}) {
      EXPECT_EQ(log.find(key), std::string::npos) << log;
      EXPECT_EQ(bodies.find(key), std::string::npos) << bodies;
    }
  }
}

TEST(ServerAuth, CliRefusesBadKeySources) {
  const std::string model = ServeProcess::model_path();
  const std::string missing = test::temp_path("missing-key").string();
  test::CliResult r = test::run_cli("serve -m " + model + " --port 0 --api-key-file " + missing);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cannot read --api-key-file " + missing), std::string::npos) << r.err;
  r = test::run_cli("serve -m " + model + " --port 0 --api-key-file " + write_file("blank-key", "  \n"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("empty"), std::string::npos) << r.err;
  r = test::run_cli("serve -m " + model + " --port 0 --api-key k1 --api-key-file " + write_file("k", "k2\n"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("excludes"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("k2"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lazyllm::server
