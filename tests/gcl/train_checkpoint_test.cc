// Checkpoints: sha256, safetensors layout, atomic writes, verification, and
// bit-exact module/optimizer round trips (resume continues exactly).
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "worker/gcl/train/checkpoint.h"
#include "worker/gcl/train/safetensors.h"
#include "gcl/base/sha256.h"

namespace gcl::core {
namespace {

namespace fs = std::filesystem;
using ::gcl::testing::StatusIs;
using ::gcl::testing::TempDir;
using ::testing::HasSubstr;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void Dump(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}
std::vector<std::string> Listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  TempDir dir;
  const std::string big(3 << 20, 'x');  // several read chunks
  Dump(dir.path() / "f", big);
  GCL_ASSERT_OK_AND_ASSIGN(std::string h, Sha256File((dir.path() / "f").string()));
  EXPECT_EQ(h, Sha256Hex(big));
  EXPECT_THAT(Sha256File((dir.path() / "nope").string()),
              StatusIs(absl::StatusCode::kNotFound, "nope"));
}

TEST(SafetensorsTest, HeaderAndByteLayoutByHand) {
  TempDir dir;
  const fs::path path = dir.path() / "w.safetensors";
  GCL_ASSERT_OK(WriteSafetensors(
      path.string(),
      {{"a", torch::tensor({1.0f, 2.0f})}, {"b", torch::tensor({int64_t{7}}).reshape({1, 1})}},
      {{"k", "v"}}));
  const std::string bytes = Slurp(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 16);
  std::string header = bytes.substr(8, n);
  const size_t json_end = header.find_last_not_of(' ') + 1;
  EXPECT_LT(header.size() - json_end, 8u);  // space padding to 8-byte alignment
  header.erase(json_end);
  EXPECT_EQ(header,
            "{\"__metadata__\":{\"k\":\"v\"},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"I64\",\"shape\":[1,1],\"data_offsets\":[8,16]}}");
  const unsigned char want[16] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 7, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(std::memcmp(bytes.data() + 8 + n, want, 16), 0);
}

TEST(SafetensorsTest, RoundTripAllDtypes) {
  TempDir dir;
  const fs::path path = dir.path() / "all.safetensors";
  torch::manual_seed(0);
  NamedTensors in = {
      {"f64", torch::randn({3, 2}, torch::kFloat64)},
      {"f32_t", torch::randn({4, 3}).t()},  // non-contiguous
      {"f16", torch::randn({5}).to(torch::kFloat16)},
      {"bf16", torch::randn({5}).to(torch::kBFloat16)},
      {"i64", torch::arange(-3, 3, torch::kInt64)},
      {"i32", torch::arange(4, torch::kInt32)},
      {"i16", torch::arange(4, torch::kInt16)},
      {"i8", torch::arange(-2, 2, torch::kInt8)},
      {"u8", torch::arange(250, 256, torch::kInt64).to(torch::kUInt8)},
      {"bool", torch::tensor({true, false, true})},
      {"scalar", torch::tensor(3.5)},
      {"empty", torch::zeros({0, 4})},
      {"weird \"name\"\n", torch::ones({1})},
  };
  const std::map<std::string, std::string> md = {{"quote\"", "line\nbreak \\ ü"}};
  GCL_ASSERT_OK(WriteSafetensors(path.string(), in, md));
  GCL_ASSERT_OK_AND_ASSIGN(NamedTensors out, ReadSafetensors(path.string()));
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i].first, in[i].first);
    EXPECT_EQ(out[i].second.scalar_type(), in[i].second.scalar_type()) << in[i].first;
    EXPECT_TRUE(torch::equal(out[i].second, in[i].second)) << in[i].first;
  }
  GCL_ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFileBytes(path.string()));
  GCL_ASSERT_OK_AND_ASSIGN(ParsedSafetensors parsed, ParseSafetensors(bytes, "x"));
  EXPECT_EQ(parsed.metadata, md);
  EXPECT_EQ(Listing(dir.path()), std::vector<std::string>{"all.safetensors"});  // no .tmp
}

std::string Image(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s + header + data;
}

// Files as another writer (Python) makes them: sorted keys, whitespace,
// escapes, offsets not in header order.
TEST(SafetensorsTest, ParsesForeignHeader) {
  const std::string data("\x01\x00\x02\x00\x00\x00\x80\x3f", 8);
  const std::string header =
      "{ \"z\" : {\"data_offsets\": [4, 8], \"dtype\": \"F32\", \"shape\": [1]},\n"
      "  \"\\u00e9\\ud83d\\ude00\": {\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]},"
      "  \"__metadata__\": {\"format\": \"pt\"} }   ";
  GCL_ASSERT_OK_AND_ASSIGN(ParsedSafetensors p, ParseSafetensors(Image(header, data), "f"));
  ASSERT_EQ(p.tensors.size(), 2u);
  EXPECT_EQ(p.tensors[0].first, "\xc3\xa9\xf0\x9f\x98\x80");  // é😀, first by offset
  EXPECT_TRUE(torch::equal(p.tensors[0].second, torch::tensor({1, 2}, torch::kInt16)));
  EXPECT_EQ(p.tensors[1].second.item<float>(), 1.0f);
  EXPECT_EQ(p.metadata.at("format"), "pt");
}

TEST(SafetensorsTest, RejectsBrokenFiles) {
  const std::string ok_header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  const std::string data(8, '\0');
  GCL_EXPECT_OK(ParseSafetensors(Image(ok_header, data), "f"));
  const auto loss = [](const std::string& substr) {
    return StatusIs(absl::StatusCode::kDataLoss, substr);
  };
  EXPECT_THAT(ParseSafetensors("abc", "src.st"), loss("src.st"));
  EXPECT_THAT(ParseSafetensors(Image(ok_header, data).substr(0, 20), "f"), loss("exceeds"));
  EXPECT_THAT(ParseSafetensors(Image(ok_header, data.substr(0, 7)), "f"), loss("truncated"));
  EXPECT_THAT(ParseSafetensors(Image(ok_header, data + "xx"), "f"), loss("data section"));
  EXPECT_THAT(ParseSafetensors(Image("{\"a\":", data), "f"), loss("JSON"));
  EXPECT_THAT(ParseSafetensors(Image("[1]", ""), "f"), loss("not a JSON object"));
  EXPECT_THAT(
      ParseSafetensors(
          Image("{\"a\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}}", data), "f"),
      loss("dtype"));
  EXPECT_THAT(
      ParseSafetensors(
          Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", data), "f"),
      loss("needs 12 bytes"));
  EXPECT_THAT(
      ParseSafetensors(Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                             data),
                       "f"),
      loss("overlap"));
  EXPECT_THAT(SerializeSafetensors({{"a", torch::ones({1})}, {"a", torch::ones({1})}}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "duplicate"));
  EXPECT_THAT(SerializeSafetensors({{"c", torch::ones({1}, torch::kComplexFloat)}}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "unsupported dtype"));
}

TEST(AtomicWriteTest, ReplacesAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = (dir.path() / "x.bin").string();
  GCL_ASSERT_OK(WriteFileAtomic(path, "first"));
  GCL_ASSERT_OK(WriteFileAtomic(path, "second"));
  EXPECT_EQ(Slurp(path), "second");
  EXPECT_EQ(Listing(dir.path()), std::vector<std::string>{"x.bin"});
  EXPECT_THAT(WriteFileAtomic((dir.path() / "no" / "such" / "dir").string(), "x"),
              StatusIs(absl::StatusCode::kNotFound, "no/such/dir.tmp"));
}

CheckpointMeta SomeMeta() {
  CheckpointMeta meta;
  meta.step = 1234;
  meta.kind = "pretrain";
  meta.config_json = "{\"lr\": 0.1,\n \"name\": \"a \\\"b\\\"\"}";
  meta.seed = 18446744073709551615ull;
  return meta;
}

TEST(CheckpointTest, RoundTripWithSidecar) {
  TempDir dir;
  const fs::path path = dir.path() / "step-1.ckpt";
  NamedTensors tensors = {{"w", torch::randn({3, 3})}, {"n", torch::tensor(int64_t{5})}};
  GCL_ASSERT_OK_AND_ASSIGN(std::string sha, WriteCheckpoint(path.string(), tensors, SomeMeta()));
  EXPECT_EQ(Listing(dir.path()), (std::vector<std::string>{"step-1.ckpt", "step-1.ckpt.sha256"}));
  EXPECT_EQ(Slurp(dir.path() / "step-1.ckpt.sha256"), sha + "  step-1.ckpt\n");
  GCL_ASSERT_OK_AND_ASSIGN(std::string file_sha, Sha256File(path.string()));
  EXPECT_EQ(file_sha, sha);
  GCL_ASSERT_OK_AND_ASSIGN(LoadedCheckpoint ck, ReadCheckpoint(path.string()));
  EXPECT_EQ(ck.sha256, sha);
  EXPECT_EQ(ck.meta.step, 1234);
  EXPECT_EQ(ck.meta.kind, "pretrain");
  EXPECT_EQ(ck.meta.config_json, SomeMeta().config_json);
  EXPECT_EQ(ck.meta.seed, 18446744073709551615ull);
  ASSERT_EQ(ck.tensors.size(), 2u);
  EXPECT_EQ(ck.tensors[0].first, "w");
  EXPECT_TRUE(torch::equal(ck.tensors[0].second, tensors[0].second));
  EXPECT_EQ(ck.tensors[1].second.item<int64_t>(), 5);
  // The checkpoint is a plain safetensors file too.
  GCL_ASSERT_OK_AND_ASSIGN(NamedTensors st, ReadSafetensors(path.string()));
  EXPECT_EQ(st.size(), 2u);
}

TEST(CheckpointTest, CorruptionIsDataLoss) {
  TempDir dir;
  const fs::path path = dir.path() / "c.ckpt";
  GCL_ASSERT_OK(WriteCheckpoint(path.string(), {{"w", torch::randn({64})}}, SomeMeta()).status());
  const std::string good = Slurp(path);

  Dump(path, good.substr(0, good.size() - 10));  // truncated
  EXPECT_THAT(ReadCheckpoint(path.string()), StatusIs(absl::StatusCode::kDataLoss, path.string()));
  EXPECT_THAT(ReadCheckpoint(path.string()),
              StatusIs(absl::StatusCode::kDataLoss, "sha256 mismatch"));

  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x01;
  Dump(path, flipped);
  EXPECT_THAT(ReadCheckpoint(path.string()), StatusIs(absl::StatusCode::kDataLoss, path.string()));

  // Truncated AND re-hashed: the digest matches but the parser rejects it.
  const std::string cut = good.substr(0, good.size() - 4);
  Dump(path, cut);
  Dump(dir.path() / "c.ckpt.sha256", Sha256Hex(cut) + "  c.ckpt\n");
  EXPECT_THAT(ReadCheckpoint(path.string()), StatusIs(absl::StatusCode::kDataLoss, path.string()));

  Dump(path, good);
  fs::remove(dir.path() / "c.ckpt.sha256");
  EXPECT_THAT(ReadCheckpoint(path.string()), StatusIs(absl::StatusCode::kDataLoss, "sidecar"));
  Dump(dir.path() / "c.ckpt.sha256", "garbage\n");
  EXPECT_THAT(ReadCheckpoint(path.string()), StatusIs(absl::StatusCode::kDataLoss, "malformed"));
  EXPECT_THAT(ReadCheckpoint((dir.path() / "missing.ckpt").string()),
              StatusIs(absl::StatusCode::kNotFound, "missing.ckpt"));
}

// A small network with BN (buffers) for the resume tests.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 3, 3).padding(1)));
    bn = register_module("bn", torch::nn::BatchNorm2d(3));
    fc = register_module("fc", torch::nn::Linear(3 * 4 * 4, 2));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn->forward(conv->forward(x)));
    return fc->forward(x.flatten(1));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Net);

void TrainSteps(Net& net, torch::optim::Optimizer& opt, int from, int to) {
  net->train();
  for (int step = from; step < to; ++step) {
    torch::Generator gen = at::detail::createCPUGenerator(100 + step);
    torch::Tensor x = torch::randn({4, 1, 4, 4}, gen);
    torch::Tensor y = torch::randn({4, 2}, gen);
    opt.zero_grad();
    torch::mse_loss(net->forward(x), y).backward();
    opt.step();
  }
}

void ExpectSameState(Net& a, Net& b) {
  NamedTensors sa, sb;
  AppendModuleState("", *a, &sa);
  AppendModuleState("", *b, &sb);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
  }
}

template <typename MakeOpt>
void ExpectBitExactResume(MakeOpt make_opt, double other_lr) {
  at::set_num_threads(1);
  TempDir dir;
  const std::string path = (dir.path() / "r.ckpt").string();
  torch::manual_seed(1);
  Net net;
  auto opt = make_opt(net, 0.05);
  TrainSteps(net, *opt, 0, 3);
  NamedTensors tensors;
  AppendModuleState("model.", *net, &tensors);
  AppendOptimizerState("optim.", *opt, &tensors);
  GCL_ASSERT_OK(WriteCheckpoint(path, tensors, SomeMeta()).status());
  TrainSteps(net, *opt, 3, 6);  // the uninterrupted run

  torch::manual_seed(2);  // a different init, overwritten by the restore
  Net resumed;
  auto opt2 = make_opt(resumed, other_lr);
  GCL_ASSERT_OK_AND_ASSIGN(LoadedCheckpoint ck, ReadCheckpoint(path));
  GCL_ASSERT_OK(RestoreModuleState("model.", ck, resumed.get()));
  GCL_ASSERT_OK(RestoreOptimizerState("optim.", ck, opt2.get()));
  TrainSteps(resumed, *opt2, 3, 6);
  ExpectSameState(net, resumed);
}

TEST(CheckpointTest, BitExactResumeSgdMomentum) {
  ExpectBitExactResume(
      [](Net& n, double lr) {
        return std::make_unique<torch::optim::SGD>(
            n->parameters(), torch::optim::SGDOptions(lr).momentum(0.9).weight_decay(1e-5));
      },
      0.7);
}

TEST(CheckpointTest, BitExactResumeAdam) {
  ExpectBitExactResume(
      [](Net& n, double lr) {
        return std::make_unique<torch::optim::Adam>(n->parameters(), torch::optim::AdamOptions(lr));
      },
      0.7);
}

TEST(CheckpointTest, BitExactResumeAdamWAmsgrad) {
  ExpectBitExactResume(
      [](Net& n, double lr) {
        return std::make_unique<torch::optim::AdamW>(n->parameters(),
                                                     torch::optim::AdamWOptions(lr).amsgrad(true));
      },
      0.7);
}

TEST(CheckpointTest, OptimizerStateNamesAndLr) {
  torch::manual_seed(3);
  Net net;
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.25).momentum(0.9));
  NamedTensors before;
  AppendOptimizerState("o.", opt, &before);  // no step yet: no momentum buffers
  EXPECT_EQ(before.size(), 2u);              // group.0.lr and num_params
  TrainSteps(net, opt, 0, 1);
  NamedTensors t;
  AppendOptimizerState("o.", opt, &t);
  std::map<std::string, torch::Tensor> m(t.begin(), t.end());
  EXPECT_EQ(m.at("o.num_params").item<int64_t>(), 6);  // conv w/b, bn w/b, fc w/b
  EXPECT_EQ(m.at("o.group.0.lr").item<double>(), 0.25);
  EXPECT_EQ(m.at("o.state.5.momentum_buffer").sizes(), torch::IntArrayRef({2}));
}

TEST(CheckpointTest, RestoreReportsMismatches) {
  torch::manual_seed(4);
  Net net;
  LoadedCheckpoint ck;
  AppendModuleState("m.", *net, &ck.tensors);
  // Drop one tensor and reshape another.
  ck.tensors.erase(std::remove_if(ck.tensors.begin(), ck.tensors.end(),
                                  [](const auto& p) { return p.first == "m.bn.running_var"; }),
                   ck.tensors.end());
  for (auto& [name, t] : ck.tensors)
    if (name == "m.fc.bias") t = torch::zeros({3});
  for (auto& [name, t] : ck.tensors)
    if (name == "m.conv.weight") t = t + 1;
  Net other;
  const torch::Tensor w_before = other->conv->weight.clone();
  const absl::Status s = RestoreModuleState("m.", ck, other.get());
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, "missing m.bn.running_var"));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, "m.fc.bias"));
  EXPECT_TRUE(torch::equal(other->conv->weight, w_before));  // nothing changed

  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1));
  LoadedCheckpoint ok;
  ok.tensors = {{"o.num_params", torch::tensor(int64_t{2})}};
  EXPECT_THAT(RestoreOptimizerState("o.", ok, &opt),
              StatusIs(absl::StatusCode::kInvalidArgument, "optimizer has 6"));
  torch::optim::RMSprop rms(net->parameters(), torch::optim::RMSpropOptions(0.1));
  EXPECT_THAT(RestoreOptimizerState("o.", ok, &rms),
              StatusIs(absl::StatusCode::kUnimplemented, "SGD"));
}

}  // namespace
}  // namespace gcl::core
