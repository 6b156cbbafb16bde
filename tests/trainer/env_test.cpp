#include <gtest/gtest.h>

#include <set>

#include "common/error.h"
#include "trainer/dist/env.h"

using namespace zsad::dist;

TEST(Nodelist, ExpandsRangesListsAndPadding) {
  EXPECT_EQ(expand_nodelist("node[01-04,07]"),
            (std::vector<std::string>{"node01", "node02", "node03", "node04", "node07"}));
  EXPECT_EQ(expand_nodelist("a1,b[2-3]"), (std::vector<std::string>{"a1", "b2", "b3"}));
  EXPECT_EQ(expand_nodelist("n[08-10]"), (std::vector<std::string>{"n08", "n09", "n10"}));
  EXPECT_EQ(expand_nodelist("n[098-101]"), (std::vector<std::string>{"n098", "n099", "n100", "n101"}));
  EXPECT_EQ(expand_nodelist("gpu-a[1-2]x[3,5]"),
            (std::vector<std::string>{"gpu-a1x3", "gpu-a1x5", "gpu-a2x3", "gpu-a2x5"}));
  EXPECT_EQ(expand_nodelist("single"), (std::vector<std::string>{"single"}));
  EXPECT_EQ(expand_nodelist("x[1-2],y,z[007]"), (std::vector<std::string>{"x1", "x2", "y", "z007"}));
}

TEST(Nodelist, FirstHostMatchesExpansion) {
  for (std::string nl : {"node[01-04,07]", "a1,b[2-3]", "n[08-10]", "rack[3-4]-n[09-11],other", "vm"}) {
    EXPECT_EQ(first_host(nl), expand_nodelist(nl).front()) << nl;
  }
  EXPECT_EQ(first_host("node[01-04,07]"), "node01");
  EXPECT_EQ(first_host("a1,b[2-3]"), "a1");
}

TEST(Nodelist, RejectsMalformed) {
  EXPECT_THROW(expand_nodelist("node[01-04"), zsad::Error);
  EXPECT_THROW(expand_nodelist("node01]"), zsad::Error);
  EXPECT_THROW(expand_nodelist("node[5-2]"), zsad::Error);
  EXPECT_THROW(expand_nodelist("node[a-b]"), zsad::Error);
  EXPECT_THROW(expand_nodelist("a,,b"), zsad::Error);
  EXPECT_THROW(first_host(""), zsad::Error);
  try {
    expand_nodelist("node[5-2]");
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("node[5-2]"), std::string::npos);
  }
}

namespace {

void expect_openmpi(const EnvMap& env, int rank, int world, int local_rank) {
  const DistEnv d = detect_env(env);
  EXPECT_EQ(d.launcher, Launcher::kOpenMpi);
  EXPECT_EQ(d.rank, rank);
  EXPECT_EQ(d.world_size, world);
  EXPECT_EQ(d.local_rank, local_rank);
}

}  // namespace

TEST(DetectEnv, SingleProcessByDefault) {
  DistEnv d = detect_env({{"HOME", "/root"}});
  EXPECT_EQ(d.launcher, Launcher::kSingle);
  EXPECT_EQ(d.rank, 0);
  EXPECT_EQ(d.world_size, 1);
}

TEST(DetectEnv, TorchrunWinsOverSlurmAndMpi) {
  EnvMap env{{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "h0"}, {"MASTER_PORT", "1234"},
             {"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "8"}, {"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "2"}};
  DistEnv d = detect_env(env);
  EXPECT_EQ(d.launcher, Launcher::kTorchrun);
  EXPECT_EQ(d.rank, 1);
  EXPECT_EQ(d.world_size, 4);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.master_addr, "h0");
  EXPECT_EQ(d.master_port, 1234);
}

TEST(DetectEnv, TorchrunWithoutLocalRankFallsBackToSlurmLocalId) {
  DistEnv d = detect_env({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"SLURM_LOCALID", "1"}});
  EXPECT_EQ(d.local_rank, 1);
}

TEST(DetectEnv, SlurmUsesFirstHostAndJobIdPort) {
  EnvMap env{{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}, {"SLURM_STEP_ID", "0"},
             {"SLURM_JOB_NODELIST", "gpu[07-08],cpu1"}, {"SLURM_JOB_ID", "4242"},
             {"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "1"}};
  DistEnv d = detect_env(env);
  EXPECT_EQ(d.launcher, Launcher::kSlurm);
  EXPECT_EQ(d.rank, 5);
  EXPECT_EQ(d.world_size, 8);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.master_addr, "gpu07");
  EXPECT_EQ(d.master_port, port_from_job_id("4242.0"));
  EXPECT_GE(d.master_port, 20000);
  EXPECT_LT(d.master_port, 60000);
  env["MASTER_PORT"] = "29999";
  EXPECT_EQ(detect_env(env).master_port, 29999);
}

// Two srun steps running at once in one allocation (`srun -N1 ... & srun -N1 ... &`) each have their
// own rank 0: on the first node of their own step, at a port of their own.
TEST(DetectEnv, ConcurrentSlurmStepsGetTheirOwnRendezvous) {
  EnvMap a{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_STEP_ID", "0"}, {"SLURM_JOB_ID", "77"},
           {"SLURM_JOB_NODELIST", "n[1-2]"}, {"SLURM_STEP_NODELIST", "n1"}};
  EnvMap b = a;
  b["SLURM_STEP_ID"] = "1";
  b["SLURM_STEP_NODELIST"] = "n2";
  EXPECT_EQ(detect_env(a).master_addr, "n1");
  EXPECT_EQ(detect_env(b).master_addr, "n2");
  EXPECT_NE(detect_env(a).master_port, detect_env(b).master_port);
  EXPECT_EQ(detect_env(a).master_port, port_from_job_id("77.0"));  // the same on every task, and after a requeue
}

// The variables below are what slurm 22.05 gives an sbatch --ntasks=2 script (measured on the
// test cluster of tests/slurm/cluster_test.sh): the batch shell has no step id, and mpirun's
// processes inherit its SLURM_PROCID=0.
TEST(DetectEnv, SlurmBatchShellIsNotARank) {
  EnvMap env{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "0"}, {"SLURM_JOB_ID", "7"}};
  DistEnv d = detect_env(env);
  EXPECT_EQ(d.launcher, Launcher::kSingle);
  EXPECT_EQ(d.world_size, 1);
  env["SLURM_STEPID"] = "0";  // the older spelling also marks a step task
  EXPECT_EQ(detect_env(env).launcher, Launcher::kSlurm);
  EXPECT_EQ(detect_env(env).world_size, 2);
}

TEST(DetectEnv, MpirunInsideAnSbatchScriptUsesOpenMpiRanks) {
  expect_openmpi({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_ID", "7"}, {"OMPI_COMM_WORLD_RANK", "1"},
                  {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}},
                 1, 2, 1);
}

TEST(DetectEnv, SlurmWorldIsTheStepsTaskCount) {
  // `srun --preserve-env -n 2` inside a 4-task allocation keeps SLURM_NTASKS=4.
  EnvMap env{{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "4"}, {"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_STEP_ID", "3"},
             {"SLURM_JOB_ID", "9"}};
  EXPECT_EQ(detect_env(env).world_size, 2);
  EXPECT_EQ(detect_env(env).rank, 1);
}

TEST(DetectEnv, MultiNodeMpirunInsideSlurmUsesOpenMpiRanks) {
  // mpirun's daemons run in a step of one task per node; the processes inherit that step's
  // SLURM_PROCID (the node index) and SLURM_NTASKS (the node count).
  expect_openmpi({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_STEP_ID", "0"}, {"SLURM_JOB_ID", "7"},
                  {"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}},
                 5, 8, 1);
}

TEST(DetectEnv, PortFromJobIdIsStableAndSpread) {
  EXPECT_EQ(port_from_job_id("123"), port_from_job_id("123"));
  std::set<int> ports;
  for (int i = 0; i < 50; ++i) ports.insert(port_from_job_id(std::to_string(1000 + i)));
  EXPECT_GT(ports.size(), 45u);
}

TEST(DetectEnv, OpenMpi) {
  expect_openmpi({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}}, 1, 2, 1);
}

TEST(DetectEnv, ExplicitOverridesWin) {
  DistOverrides o;
  o.rank = 0;
  o.world_size = 1;
  o.master_port = 3000;
  DistEnv d = detect_env({{"RANK", "3"}, {"WORLD_SIZE", "4"}}, o);
  EXPECT_EQ(d.rank, 0);
  EXPECT_EQ(d.world_size, 1);
  EXPECT_EQ(d.master_port, 3000);
  DistEnv e = detect_env({}, o);
  EXPECT_EQ(e.launcher, Launcher::kExplicit);
}

TEST(DetectEnv, RejectsBadValues) {
  EXPECT_THROW(detect_env({{"RANK", "x"}, {"WORLD_SIZE", "2"}}), zsad::Error);
  EXPECT_THROW(detect_env({{"RANK", "2"}, {"WORLD_SIZE", "2"}}), zsad::Error);
  EXPECT_THROW(detect_env({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_PORT", "70000"}}), zsad::Error);
  try {
    detect_env({{"RANK", "1x"}, {"WORLD_SIZE", "2"}});
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("RANK"), std::string::npos);
  }
}

TEST(DetectEnv, CudaDeviceFromLocalRank) {
  EXPECT_EQ(cuda_device_for(0, 4), 0);
  EXPECT_EQ(cuda_device_for(5, 4), 1);
  EXPECT_EQ(cuda_device_for(1, 0), -1);
}
