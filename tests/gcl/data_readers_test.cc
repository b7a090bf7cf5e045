// Readers (acdc-h5, nifti, msd, synthetic), LoadDataset splits and the slice
// cache, on the real files in ../shared/data where present and on small
// fixtures written here (including corrupted ones).
#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <utime.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "worker/gcl/data/acdc_h5.h"
#include "worker/gcl/data/dataset.h"
#include "worker/gcl/data/msd.h"
#include "worker/gcl/data/nifti_io.h"
#include "worker/gcl/data/preprocess.h"
#include "worker/gcl/data/slice_cache.h"
#include "worker/gcl/data/synthetic.h"

namespace gcl::core {
namespace {

namespace fs = std::filesystem;
using ::gcl::testing::IsOk;
using ::gcl::testing::StatusIs;
using ::gcl::testing::TempDir;
using ::testing::HasSubstr;

fs::path AcdcDir() {
  fs::path d = ::gcl::testing::SharedDataDir();
  return d.empty() ? d : d / "ACDC";
}

#define SKIP_WITHOUT_SHARED_DATA()                                                        \
  if (::gcl::testing::SharedDataDir().empty()) {                                          \
    GTEST_SKIP() << "shared data folder (GCL_SHARED_DATA=../shared/data) is absent";      \
  }

std::set<int64_t> Values(const at::Tensor& t) {
  at::Tensor u = std::get<0>(at::_unique(t.reshape({-1})));
  std::set<int64_t> out;
  for (int64_t i = 0; i < u.numel(); ++i) out.insert(u[i].item<int64_t>());
  return out;
}

void WriteText(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

std::string ReadBytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Writes float32 datasets into a new HDF5 file (test fixture writer).
void WriteH5(const fs::path& path, const std::vector<std::pair<std::string, at::Tensor>>& datasets) {
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  for (const auto& [name, t] : datasets) {
    at::Tensor c = t.to(at::kFloat).contiguous();
    std::vector<hsize_t> dims(c.sizes().begin(), c.sizes().end());
    hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    hid_t ds = H5Dcreate2(file, name.c_str(), H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, c.data_ptr()), 0);
    H5Dclose(ds);
    H5Sclose(space);
  }
  H5Fclose(file);
}

void ExpectVolumesEqual(const std::vector<Volume>& a, const std::vector<Volume>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id);
    EXPECT_EQ(a[i].case_id, b[i].case_id);
    EXPECT_EQ(a[i].phase, b[i].phase);
    EXPECT_EQ(a[i].spacing_zyx, b[i].spacing_zyx);
    EXPECT_TRUE(at::equal(a[i].image, b[i].image)) << a[i].id;
    ASSERT_EQ(a[i].label.defined(), b[i].label.defined());
    if (a[i].label.defined()) {
      EXPECT_EQ(b[i].label.scalar_type(), at::kLong);
      EXPECT_TRUE(at::equal(a[i].label, b[i].label)) << a[i].id;
    }
  }
}

void ExpectDatasetsEqual(const Dataset& a, const Dataset& b) {
  EXPECT_EQ(a.class_names, b.class_names);
  EXPECT_EQ(a.has_phase, b.has_phase);
  ExpectVolumesEqual(a.train, b.train);
  ExpectVolumesEqual(a.val, b.val);
  ExpectVolumesEqual(a.test, b.test);
}

// ---------------------------------------------------------------- acdc-h5

TEST(AcdcH5Test, ReadsVolumeFiles) {
  SKIP_WITHOUT_SHARED_DATA();
  GCL_ASSERT_OK_AND_ASSIGN(auto index, IndexAcdcDataDir((AcdcDir() / "data").string()));
  for (const char* id : {"patient001_frame01", "patient001_frame02"}) {
    ASSERT_TRUE(index.count(id)) << id;
    const AcdcVolumeFiles& files = index.at(id);
    EXPECT_FALSE(files.volume_file.empty());
    GCL_ASSERT_OK_AND_ASSIGN(Volume v, ReadAcdcVolume(files));
    EXPECT_EQ(v.id, id);
    EXPECT_EQ(v.case_id, "patient001");
    EXPECT_EQ(v.phase, std::string(id).back() == '1' ? 0 : 1);
    ASSERT_EQ(v.image.dim(), 3);
    EXPECT_EQ(v.image.scalar_type(), at::kFloat);
    EXPECT_GE(v.image.size(0), 5);
    EXPECT_GE(v.image.min().item<float>(), 0.0f);
    EXPECT_LE(v.image.max().item<float>(), 1.0f);
    EXPECT_GT(v.image.max().item<float>(), 0.5f);
    ASSERT_TRUE(v.label.defined());
    EXPECT_EQ(v.label.scalar_type(), at::kLong);
    EXPECT_EQ(v.label.sizes(), v.image.sizes());
    EXPECT_EQ(Values(v.label), (std::set<int64_t>{0, 1, 2, 3}));
    EXPECT_FALSE(v.has_spacing());
  }
}

TEST(AcdcH5Test, AssemblesSliceFilesInKOrder) {
  SKIP_WITHOUT_SHARED_DATA();
  GCL_ASSERT_OK_AND_ASSIGN(auto index, IndexAcdcDataDir((AcdcDir() / "data").string()));
  const AcdcVolumeFiles& files = index.at("patient003_frame01");
  EXPECT_TRUE(files.volume_file.empty());
  ASSERT_EQ(files.slices.size(), 10u);  // patient003_frame01_slice_1..10.h5
  GCL_ASSERT_OK_AND_ASSIGN(Volume v, ReadAcdcVolume(files));
  EXPECT_EQ(v.phase, 0);
  ASSERT_EQ(v.image.size(0), 10);
  for (int k = 1; k <= 10; ++k) {
    const fs::path p = AcdcDir() / "data" / ("patient003_frame01_slice_" + std::to_string(k) + ".h5");
    EXPECT_EQ(files.slices[k - 1], p.string());
    at::Tensor img, lab;
    GCL_ASSERT_OK(ReadH5ImageLabel(p.string(), 2, &img, &lab));
    EXPECT_TRUE(at::equal(v.image[k - 1], img)) << k;
    EXPECT_TRUE(at::equal(v.label[k - 1], lab)) << k;
  }
  EXPECT_THAT(Values(v.label), ::testing::IsSubsetOf(std::set<int64_t>{0, 1, 2, 3}));
}

TEST(AcdcH5Test, RealListsHold70_10_20PatientsAndResolve) {
  SKIP_WITHOUT_SHARED_DATA();
  GCL_ASSERT_OK_AND_ASSIGN(auto index, IndexAcdcDataDir((AcdcDir() / "data").string()));
  std::set<std::string> all_patients;
  const std::vector<std::pair<std::string, size_t>> lists = {{"train.list", 70}, {"val.list", 10}, {"test.list", 20}};
  for (const auto& [name, patients] : lists) {
    GCL_ASSERT_OK_AND_ASSIGN(std::vector<std::string> ids, ReadIdList((AcdcDir() / name).string()));
    EXPECT_EQ(ids.size(), 2 * patients) << name;
    std::set<std::string> cases;
    for (const std::string& id : ids) {
      EXPECT_TRUE(index.count(id)) << id;
      cases.insert(id.substr(0, id.find("_frame")));
    }
    EXPECT_EQ(cases.size(), patients) << name;
    all_patients.insert(cases.begin(), cases.end());
  }
  EXPECT_EQ(all_patients.size(), 100u);  // disjoint splits
}

// A dataset root with the real data/ folder and small lists.
void MakeAcdcRoot(const fs::path& root, const std::string& train, const std::string& val, const std::string& test) {
  fs::create_directories(root);
  fs::create_directory_symlink(AcdcDir() / "data", root / "data");
  WriteText(root / "train.list", train);
  WriteText(root / "val.list", val);
  WriteText(root / "test.list", test);
}

TEST(AcdcH5Test, LoadDatasetFollowsListFiles) {
  SKIP_WITHOUT_SHARED_DATA();
  TempDir tmp;
  MakeAcdcRoot(tmp.path() / "acdc", "patient003_frame01\npatient003_frame02\n\n# comment\n",
               "patient001_frame01.h5\n", "patient002_frame02\n");
  DatasetOptions o;
  o.format = "acdc-h5";
  o.path = (tmp.path() / "acdc").string();
  o.image_size = 64;
  GCL_ASSERT_OK_AND_ASSIGN(Dataset ds, LoadDataset(o));
  EXPECT_EQ(ds.class_names, (std::vector<std::string>{"background", "RV", "Myo", "LV"}));
  EXPECT_EQ(ds.num_classes(), 4);
  EXPECT_TRUE(ds.has_phase);
  ASSERT_EQ(ds.train.size(), 2u);
  ASSERT_EQ(ds.val.size(), 1u);
  ASSERT_EQ(ds.test.size(), 1u);
  EXPECT_EQ(ds.train[0].id, "patient003_frame01");
  EXPECT_EQ(ds.train[1].phase, 1);
  EXPECT_EQ(ds.val[0].id, "patient001_frame01");
  EXPECT_EQ(ds.test[0].case_id, "patient002");
  for (const Volume* v : {&ds.train[0], &ds.train[1], &ds.val[0], &ds.test[0]}) {
    EXPECT_EQ(v->image.size(1), 64);
    EXPECT_EQ(v->image.size(2), 64);
    EXPECT_EQ(v->label.sizes(), v->image.sizes());
    EXPECT_GE(v->image.min().item<float>(), 0.0f);
    EXPECT_LE(v->image.max().item<float>(), 1.0f);
    EXPECT_THAT(Values(v->label), ::testing::IsSubsetOf(std::set<int64_t>{0, 1, 2, 3}));
  }
}

TEST(AcdcH5Test, ListErrorsNameTheFile) {
  SKIP_WITHOUT_SHARED_DATA();
  TempDir tmp;
  const fs::path root = tmp.path() / "acdc";
  MakeAcdcRoot(root, "patient003_frame01\n", "patient999_frame01\n", "patient002_frame01\n");
  DatasetOptions o;
  o.format = "acdc-h5";
  o.path = root.string();
  auto missing_entry = LoadDataset(o);
  EXPECT_THAT(missing_entry, StatusIs(absl::StatusCode::kNotFound, (root / "val.list").string()));
  EXPECT_THAT(missing_entry.status().message(), HasSubstr("patient999_frame01"));

  fs::remove(root / "test.list");
  EXPECT_THAT(LoadDataset(o), StatusIs(absl::StatusCode::kNotFound, (root / "test.list").string()));
}

TEST(AcdcH5Test, CorruptFilesGiveErrorsNamingThePath) {
  TempDir tmp;
  at::Tensor img, lab;
  const fs::path text = tmp.path() / "text.h5";
  WriteText(text, "this is not an HDF5 file\n");
  EXPECT_THAT(ReadH5ImageLabel(text.string(), 3, &img, &lab),
              StatusIs(absl::StatusCode::kInvalidArgument, text.string() + ": not an HDF5 file"));

  const fs::path no_image = tmp.path() / "no_image.h5";
  WriteH5(no_image, {{"label", at::zeros({2, 4, 4})}});
  EXPECT_THAT(ReadH5ImageLabel(no_image.string(), 3, &img, &lab),
              StatusIs(absl::StatusCode::kInvalidArgument, no_image.string() + ": no /image dataset"));

  const fs::path mismatch = tmp.path() / "mismatch.h5";
  WriteH5(mismatch, {{"image", at::rand({2, 4, 4})}, {"label", at::zeros({2, 4, 5})}});
  EXPECT_THAT(ReadH5ImageLabel(mismatch.string(), 3, &img, &lab),
              StatusIs(absl::StatusCode::kInvalidArgument, mismatch.string() + ": /label shape [2, 4, 5]"));

  const fs::path rank = tmp.path() / "rank.h5";
  WriteH5(rank, {{"image", at::rand({4, 4})}});
  EXPECT_THAT(ReadH5ImageLabel(rank.string(), 3, &img, &lab),
              StatusIs(absl::StatusCode::kInvalidArgument, "rank 2, expected 3"));

  const fs::path good = tmp.path() / "good.h5";
  at::Tensor image = at::rand({3, 5, 6}), label = at::randint(0, 4, {3, 5, 6});
  WriteH5(good, {{"image", image}, {"label", label}});
  GCL_ASSERT_OK(ReadH5ImageLabel(good.string(), 3, &img, &lab));
  EXPECT_TRUE(at::equal(img, image));
  EXPECT_TRUE(at::equal(lab, label.to(at::kLong)));

  // Truncated HDF5: the superblock survives, the data does not.
  const std::string bytes = ReadBytes(good);
  const fs::path truncated = tmp.path() / "truncated.h5";
  WriteText(truncated, bytes.substr(0, bytes.size() / 2));
  absl::Status s = ReadH5ImageLabel(truncated.string(), 3, &img, &lab);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(truncated.string()));

  EXPECT_THAT(ReadH5ImageLabel((tmp.path() / "absent.h5").string(), 3, &img, &lab),
              StatusIs(absl::StatusCode::kNotFound, "absent.h5"));
}

// ---------------------------------------------------------------- nifti

TEST(NiftiTest, RoundTripWriteRead) {
  TempDir tmp;
  at::Tensor image = at::rand({5, 7, 9});
  at::Tensor label = at::randint(0, 4, {5, 7, 9}, at::kLong);
  const std::string ip = (tmp.path() / "vol_frame02.nii.gz").string();
  const std::string lp = (tmp.path() / "vol_frame02_gt.nii").string();
  GCL_ASSERT_OK(WriteNiftiVolume(ip, image, {3.0, 0.5, 0.75}, false));
  GCL_ASSERT_OK(WriteNiftiVolume(lp, label, {3.0, 0.5, 0.75}, true));
  GCL_ASSERT_OK_AND_ASSIGN(Volume v, ReadNiftiVolume(ip, lp));
  EXPECT_EQ(v.id, "vol_frame02");
  EXPECT_EQ(v.case_id, "vol");
  EXPECT_EQ(v.phase, 1);
  EXPECT_TRUE(at::equal(v.image, image));
  EXPECT_TRUE(at::equal(v.label, label));
  EXPECT_NEAR(v.spacing_zyx[0], 3.0, 1e-6);
  EXPECT_NEAR(v.spacing_zyx[1], 0.5, 1e-6);
  EXPECT_NEAR(v.spacing_zyx[2], 0.75, 1e-6);

  // Label values beyond uint8 survive (stored as int32).
  at::Tensor big = label * 1000;
  const std::string bp = (tmp.path() / "big.nii.gz").string();
  GCL_ASSERT_OK(WriteNiftiVolume(bp, big, {1, 1, 1}, true));
  GCL_ASSERT_OK_AND_ASSIGN(NiftiArray arr, ReadNiftiArray(bp));
  EXPECT_TRUE(at::equal(arr.data.to(at::kLong), big));
  // No temporary files left behind.
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp.path())) ++files;
  EXPECT_EQ(files, 3u);
}

TEST(NiftiTest, SlicesFollowWorldZ) {
  TempDir tmp;
  const int64_t ni = 4, nj = 3, nk = 2;
  at::Tensor kji = at::empty({nk, nj, ni}, at::kFloat);
  for (int64_t k = 0; k < nk; ++k)
    for (int64_t j = 0; j < nj; ++j)
      for (int64_t i = 0; i < ni; ++i) kji[k][j][i] = static_cast<float>(100 * i + 10 * j + k);
  // Voxel axis i runs along world z, j along world x, k along world y.
  Affine a{};
  a[2][0] = 2.0;   // i -> z (2 mm)
  a[0][1] = 0.5;   // j -> x
  a[1][2] = 0.75;  // k -> y
  for (bool with_sform : {true, false}) {
    const std::string p = (tmp.path() / (with_sform ? "s.nii.gz" : "q.nii.gz")).string();
    GCL_ASSERT_OK(WriteNiftiArray(p, kji, {2.0, 0.5, 0.75}, a, false, with_sform));
    GCL_ASSERT_OK_AND_ASSIGN(NiftiArray arr, ReadNiftiArray(p));
    EXPECT_EQ(arr.from_sform, with_sform);
    const SliceAxis axis = SliceAxisFromAffine(arr.voxel_to_world);
    EXPECT_EQ(axis.axis, 0);
    EXPECT_FALSE(axis.flip);
    GCL_ASSERT_OK_AND_ASSIGN(Volume v, ReadNiftiVolume(p));
    ASSERT_EQ(v.image.sizes(), (std::vector<int64_t>{ni, nk, nj}));  // S = i, H = k, W = j
    for (int64_t s = 0; s < ni; ++s)
      for (int64_t h = 0; h < nk; ++h)
        for (int64_t w = 0; w < nj; ++w) EXPECT_EQ(v.image[s][h][w].item<float>(), 100 * s + 10 * w + h);
    EXPECT_NEAR(v.spacing_zyx[0], 2.0, 1e-6);
    EXPECT_NEAR(v.spacing_zyx[1], 0.75, 1e-6);
    EXPECT_NEAR(v.spacing_zyx[2], 0.5, 1e-6);
  }
  // World z decreasing along i: slices are reversed so z increases with s.
  a[2][0] = -2.0;
  const std::string p = (tmp.path() / "flip.nii.gz").string();
  GCL_ASSERT_OK(WriteNiftiArray(p, kji, {2.0, 0.5, 0.75}, a, false));
  GCL_ASSERT_OK_AND_ASSIGN(Volume v, ReadNiftiVolume(p));
  for (int64_t s = 0; s < ni; ++s) EXPECT_EQ(v.image[s][1][2].item<float>(), 100 * (ni - 1 - s) + 10 * 2 + 1);
  // Oblique: the axis with the largest relative z component wins.
  Affine oblique{};
  oblique[0][0] = 1.0;
  oblique[2][0] = 0.2;
  oblique[1][1] = 1.0;
  oblique[2][2] = -0.9;
  oblique[0][2] = 0.3;
  const SliceAxis ob = SliceAxisFromAffine(oblique);
  EXPECT_EQ(ob.axis, 2);
  EXPECT_TRUE(ob.flip);
}

TEST(NiftiTest, CorruptFilesGiveErrorsNamingThePath) {
  TempDir tmp;
  const fs::path good = tmp.path() / "good.nii.gz";
  GCL_ASSERT_OK(WriteNiftiVolume(good.string(), at::rand({8, 16, 16}), {1, 1, 1}, false));
  const std::string bytes = ReadBytes(good);

  const fs::path truncated = tmp.path() / "truncated.nii.gz";
  WriteText(truncated, bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(ReadNiftiVolume(truncated.string()), StatusIs(absl::StatusCode::kDataLoss, truncated.string()));

  const fs::path plain = tmp.path() / "plain.nii";
  GCL_ASSERT_OK(WriteNiftiVolume(plain.string(), at::rand({2, 3, 4}), {1, 1, 1}, false));
  std::string raw = ReadBytes(plain);
  ASSERT_EQ(raw.substr(344, 3), "n+1");
  raw.replace(344, 4, std::string("XYZ\0", 4));
  const fs::path magic = tmp.path() / "magic.nii";
  WriteText(magic, raw);
  EXPECT_THAT(ReadNiftiVolume(magic.string()),
              StatusIs(absl::StatusCode::kInvalidArgument, magic.string() + ": wrong NIfTI-1 magic"));
  raw = ReadBytes(plain);
  raw[0] = 'x';  // sizeof_hdr
  WriteText(magic, raw);
  EXPECT_THAT(ReadNiftiVolume(magic.string()), StatusIs(absl::StatusCode::kInvalidArgument, "not a NIfTI file"));

  const fs::path plain_trunc = tmp.path() / "plain_trunc.nii";
  WriteText(plain_trunc, ReadBytes(plain).substr(0, 352 + 10));
  EXPECT_THAT(ReadNiftiVolume(plain_trunc.string()),
              StatusIs(absl::StatusCode::kDataLoss, plain_trunc.string() + ": truncated image data"));

  const fs::path four_d = tmp.path() / "four_d.nii.gz";
  Affine eye{};
  for (int i = 0; i < 3; ++i) eye[i][i] = 1.0;
  GCL_ASSERT_OK(WriteNiftiArray(four_d.string(), at::rand({3, 2, 4, 5}), {1, 1, 1}, eye, false));
  EXPECT_THAT(ReadNiftiVolume(four_d.string()),
              StatusIs(absl::StatusCode::kInvalidArgument, four_d.string() + ": 4D image with 3 volumes"));
  GCL_ASSERT_OK_AND_ASSIGN(Volume first, ReadNiftiVolume(four_d.string(), "", ExtraDims::kFirstChannel));
  EXPECT_EQ(first.image.sizes(), (std::vector<int64_t>{2, 4, 5}));
  const fs::path single_t = tmp.path() / "single_t.nii.gz";  // dim[4] == 1 counts as 3D
  GCL_ASSERT_OK(WriteNiftiArray(single_t.string(), at::rand({1, 2, 4, 5}), {1, 1, 1}, eye, false));
  GCL_EXPECT_OK(ReadNiftiVolume(single_t.string()));

  const fs::path label = tmp.path() / "label.nii.gz";
  GCL_ASSERT_OK(WriteNiftiVolume(label.string(), at::zeros({8, 16, 15}, at::kLong), {1, 1, 1}, true));
  auto mismatch = ReadNiftiVolume(good.string(), label.string());
  EXPECT_THAT(mismatch, StatusIs(absl::StatusCode::kInvalidArgument, label.string()));
  EXPECT_THAT(mismatch.status().message(), HasSubstr(good.string()));

  EXPECT_THAT(ReadNiftiVolume((tmp.path() / "absent.nii.gz").string()),
              StatusIs(absl::StatusCode::kNotFound, "absent.nii.gz"));
  const fs::path text = tmp.path() / "text.nii.gz";
  WriteText(text, "hello");
  EXPECT_THAT(ReadNiftiVolume(text.string()), StatusIs(absl::StatusCode::kInvalidArgument, text.string()));
}

TEST(NiftiTest, Promise12PairedFolders) {
  SKIP_WITHOUT_SHARED_DATA();
  const fs::path src = ::gcl::testing::SharedDataDir() / "PROMISE12_sample";
  TempDir tmp;
  fs::create_directories(tmp.path() / "images");
  fs::create_directories(tmp.path() / "labels");
  fs::create_symlink(src / "Case00.nii.gz", tmp.path() / "images" / "Case00.nii.gz");
  fs::create_symlink(src / "Case00_segmentation.nii.gz", tmp.path() / "labels" / "Case00_segmentation.nii.gz");
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<NiftiPair> pairs, FindNiftiPairs(tmp.path().string()));
  ASSERT_EQ(pairs.size(), 1u);
  EXPECT_EQ(pairs[0].id, "Case00");
  EXPECT_EQ(pairs[0].label, (tmp.path() / "labels" / "Case00_segmentation.nii.gz").string());
  // The flat source folder pairs the same way.
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<NiftiPair> flat, FindNiftiPairs(src.string()));
  ASSERT_EQ(flat.size(), 1u);
  EXPECT_EQ(flat[0].label, (src / "Case00_segmentation.nii.gz").string());

  GCL_ASSERT_OK_AND_ASSIGN(Volume v, ReadNiftiVolume(pairs[0].image, pairs[0].label));
  EXPECT_EQ(v.case_id, "Case00");
  EXPECT_EQ(v.phase, -1);
  EXPECT_EQ(v.image.sizes(), (std::vector<int64_t>{64, 128, 128}));  // axial: k is world z
  EXPECT_NEAR(v.spacing_zyx[0], 1.6156, 1e-3);
  EXPECT_NEAR(v.spacing_zyx[1], 1.0937, 1e-3);
  EXPECT_NEAR(v.spacing_zyx[2], 1.0938, 1e-3);
  EXPECT_EQ(Values(v.label), (std::set<int64_t>{0, 1}));
  EXPECT_GT(v.image.max().item<float>(), v.image.min().item<float>());

  DatasetOptions o;
  o.format = "nifti";
  o.path = tmp.path().string();
  o.image_size = 32;
  o.val_cases = 0;
  o.test_cases = 0;
  GCL_ASSERT_OK_AND_ASSIGN(Dataset ds, LoadDataset(o));
  ASSERT_EQ(ds.train.size(), 1u);
  EXPECT_EQ(ds.class_names, (std::vector<std::string>{"background", "label_1"}));
  EXPECT_FALSE(ds.has_phase);
  EXPECT_EQ(ds.train[0].image.sizes(), (std::vector<int64_t>{64, 32, 32}));
  EXPECT_NEAR(ds.train[0].spacing_zyx[1], 1.0937 * 4, 4e-3);
}

TEST(NiftiTest, HvsmrLabelVolume) {
  SKIP_WITHOUT_SHARED_DATA();
  const fs::path p =
      ::gcl::testing::SharedDataDir() / "HVSMR2016_sample" / "training" / "training_axial_full_pat0_label_B.nii.gz";
  GCL_ASSERT_OK_AND_ASSIGN(NiftiArray arr, ReadNiftiArray(p.string()));
  GCL_ASSERT_OK_AND_ASSIGN(Volume v, ReadNiftiVolume(p.string()));
  EXPECT_EQ(v.image.dim(), 3);
  EXPECT_EQ(v.image.numel(), arr.data.numel());
  EXPECT_TRUE(v.has_spacing());
  std::set<int64_t> values = Values(v.image.round().to(at::kLong));
  EXPECT_THAT(values, ::testing::IsSubsetOf(std::set<int64_t>{0, 1, 2, 64, 71}));
  EXPECT_TRUE(values.count(1) && values.count(2));
  // Axial file: slicing is along the voxel axis closest to world z.
  const SliceAxis axis = SliceAxisFromAffine(arr.voxel_to_world);
  EXPECT_EQ(v.image.size(0), arr.data.size(2 - axis.axis));
}

// ---------------------------------------------------------------- datasets

TEST(DatasetTest, SyntheticSplitsKeepCasesTogether) {
  DatasetOptions o;
  o.format = "synthetic";
  o.synthetic.patients = 6;
  o.synthetic.slices = 4;
  o.synthetic.size = 32;
  o.image_size = 24;
  o.val_cases = 1;
  o.test_cases = 2;
  GCL_ASSERT_OK_AND_ASSIGN(Dataset ds, LoadDataset(o));
  EXPECT_EQ(ds.train.size(), 6u);
  EXPECT_EQ(ds.val.size(), 2u);
  EXPECT_EQ(ds.test.size(), 4u);
  EXPECT_TRUE(ds.has_phase);
  EXPECT_EQ(ds.num_classes(), 4);
  EXPECT_EQ(ds.val[0].case_id, "syn004");
  EXPECT_EQ(ds.val[1].case_id, "syn004");
  EXPECT_EQ(ds.test[0].case_id, "syn005");
  EXPECT_EQ(ds.test[3].case_id, "syn006");
  EXPECT_EQ(ds.train[0].image.sizes(), (std::vector<int64_t>{4, 24, 24}));

  o.val_cases = 3;
  o.test_cases = 3;
  EXPECT_THAT(LoadDataset(o), StatusIs(absl::StatusCode::kInvalidArgument, "6 cases"));
  o.format = "dicom";
  EXPECT_THAT(LoadDataset(o), StatusIs(absl::StatusCode::kInvalidArgument, "unknown dataset format"));
}

TEST(DatasetTest, SyntheticWrittenAsNiftiReadsBack) {
  TempDir tmp;
  SyntheticOptions so;
  so.patients = 4;
  so.slices = 3;
  so.size = 32;
  const std::vector<Volume> vols = GenerateSyntheticVolumes(so);
  GCL_ASSERT_OK(WriteDatasetAsNifti(vols, tmp.path().string()));
  DatasetOptions o;
  o.format = "nifti";
  o.path = tmp.path().string();
  o.image_size = 32;
  o.val_cases = 1;
  o.test_cases = 1;
  GCL_ASSERT_OK_AND_ASSIGN(Dataset ds, LoadDataset(o));
  EXPECT_EQ(ds.class_names, (std::vector<std::string>{"background", "label_1", "label_2", "label_3"}));
  EXPECT_TRUE(ds.has_phase);
  ASSERT_EQ(ds.train.size(), 4u);
  ASSERT_EQ(ds.val.size(), 2u);
  ASSERT_EQ(ds.test.size(), 2u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(ds.train[i].id, vols[i].id);
    EXPECT_EQ(ds.train[i].case_id, vols[i].case_id);
    EXPECT_EQ(ds.train[i].phase, vols[i].phase);
    EXPECT_TRUE(at::equal(ds.train[i].label, vols[i].label));
    EXPECT_TRUE(at::allclose(ds.train[i].image, NormalizeIntensity(vols[i].image), 1e-5, 1e-6));
    EXPECT_NEAR(ds.train[i].spacing_zyx[0], vols[i].spacing_zyx[0], 1e-6);
  }
  EXPECT_EQ(ds.test[1].id, vols[7].id);

  // Explicit lists override the case split.
  WriteText(tmp.path() / "val.list", vols[0].id + "\n");
  WriteText(tmp.path() / "test.list", vols[1].id + "\n" + vols[2].id + "\n");
  GCL_ASSERT_OK_AND_ASSIGN(Dataset listed, LoadDataset(o));
  EXPECT_EQ(listed.train.size(), 5u);
  ASSERT_EQ(listed.val.size(), 1u);
  EXPECT_EQ(listed.val[0].id, vols[0].id);
  EXPECT_EQ(listed.test.size(), 2u);
  WriteText(tmp.path() / "test.list", "nosuch_frame01\n");
  EXPECT_THAT(LoadDataset(o), StatusIs(absl::StatusCode::kNotFound, (tmp.path() / "test.list").string()));
}

TEST(DatasetTest, NiftiLabelValuesAreRemappedWhenNotContiguous) {
  TempDir tmp;
  at::Tensor label = at::zeros({2, 8, 8}, at::kLong);
  label.index_put_({0, at::indexing::Slice(0, 4)}, 64);
  label.index_put_({1, at::indexing::Slice(4, 8)}, 71);
  fs::create_directories(tmp.path() / "images");
  fs::create_directories(tmp.path() / "labels");
  for (const char* id : {"a", "b", "c"}) {
    GCL_ASSERT_OK(WriteNiftiVolume((tmp.path() / "images" / (std::string(id) + ".nii.gz")).string(),
                                   at::rand({2, 8, 8}), {1, 1, 1}, false));
    GCL_ASSERT_OK(WriteNiftiVolume((tmp.path() / "labels" / (std::string(id) + "_label.nii.gz")).string(), label,
                                   {1, 1, 1}, true));
  }
  DatasetOptions o;
  o.format = "nifti";
  o.path = tmp.path().string();
  o.image_size = 8;
  o.val_cases = 1;
  o.test_cases = 1;
  GCL_ASSERT_OK_AND_ASSIGN(Dataset ds, LoadDataset(o));
  EXPECT_EQ(ds.class_names, (std::vector<std::string>{"background", "label_64", "label_71"}));
  EXPECT_TRUE(at::equal(ds.train[0].label, (label == 64).to(at::kLong) + 2 * (label == 71).to(at::kLong)));
  EXPECT_EQ(ds.test[0].id, "c");
}

TEST(DatasetTest, MsdTakesChannelZeroAndLabelNames) {
  TempDir tmp;
  fs::create_directories(tmp.path() / "imagesTr");
  fs::create_directories(tmp.path() / "labelsTr");
  Affine eye{};
  for (int i = 0; i < 3; ++i) eye[i][i] = 1.0;
  std::vector<at::Tensor> t2;
  std::string training;
  for (int c = 0; c < 3; ++c) {
    const std::string id = "prostate_0" + std::to_string(c);
    at::Tensor img = at::rand({2, 3, 10, 12});  // [channel, k, j, i]
    img[1].mul_(1000.0);                        // ADC channel: very different values
    t2.push_back(img[0]);
    GCL_ASSERT_OK(WriteNiftiArray((tmp.path() / "imagesTr" / (id + ".nii.gz")).string(), img, {1, 1, 1}, eye, false));
    GCL_ASSERT_OK(WriteNiftiVolume((tmp.path() / "labelsTr" / (id + ".nii.gz")).string(),
                                   at::randint(0, 3, {3, 10, 12}, at::kLong), {1, 1, 1}, true));
    training += std::string(c ? "," : "") + "{\"image\": \"./imagesTr/" + id + ".nii.gz\", \"label\": \"./labelsTr/" +
                id + ".nii.gz\"}";
  }
  WriteText(tmp.path() / "dataset.json",
            "{\"name\": \"Prostate\", \"modality\": {\"0\": \"T2\", \"1\": \"ADC\"},\n"
            " \"labels\": {\"0\": \"background\", \"1\": \"PZ\", \"2\": \"TZ\"}, \"numTraining\": 3,\n"
            " \"training\": [" + training + "], \"test\": [\"./imagesTs/prostate_99.nii.gz\"],"
            " \"description\": \"esc \\\"q\\\" \\u00e9\"}");
  GCL_ASSERT_OK_AND_ASSIGN(MsdIndex index, ReadMsdIndex(tmp.path().string()));
  EXPECT_EQ(index.modalities, (std::vector<std::string>{"T2", "ADC"}));
  DatasetOptions o;
  o.format = "msd";
  o.path = tmp.path().string();
  o.image_size = 12;
  o.val_cases = 1;
  o.test_cases = 1;
  GCL_ASSERT_OK_AND_ASSIGN(Dataset ds, LoadDataset(o));
  EXPECT_EQ(ds.class_names, (std::vector<std::string>{"background", "PZ", "TZ"}));
  ASSERT_EQ(ds.train.size(), 1u);
  EXPECT_EQ(ds.train[0].id, "prostate_00");
  // Channel 0 only: padded 10 -> 12 rows (1 top, 1 bottom), no resize.
  at::Tensor expected = NormalizeIntensity(t2[0]);
  EXPECT_TRUE(at::allclose(ds.train[0].image.slice(1, 1, 11), expected, 1e-5, 1e-6));

  WriteText(tmp.path() / "dataset.json", "{\"labels\": {\"0\": \"background\"}, \"training\": [");
  EXPECT_THAT(LoadDataset(o),
              StatusIs(absl::StatusCode::kInvalidArgument, (tmp.path() / "dataset.json").string() + ": JSON error"));
}

// ---------------------------------------------------------------- cache

TEST(SliceCacheTest, SecondLoadComesFromCacheAndCorruptEntriesAreRebuilt) {
  TempDir tmp;
  SyntheticOptions so;
  so.patients = 3;
  so.slices = 3;
  so.size = 24;
  const fs::path data = tmp.path() / "data";
  GCL_ASSERT_OK(WriteDatasetAsNifti(GenerateSyntheticVolumes(so), data.string()));
  DatasetOptions o;
  o.format = "nifti";
  o.path = data.string();
  o.image_size = 16;
  o.val_cases = 1;
  o.test_cases = 1;
  o.cache_dir = (tmp.path() / "cache").string();
  GCL_ASSERT_OK_AND_ASSIGN(Dataset first, LoadDataset(o));
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(o.cache_dir)) entries.push_back(e.path());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].extension(), ".gclcache");

  GCL_ASSERT_OK_AND_ASSIGN(Dataset second, LoadDataset(o));
  ExpectDatasetsEqual(first, second);

  // Replace a source image by garbage of the same size and mtime: the cache
  // answers, so nothing is decoded.
  const fs::path image = data / "imagesTr" / "syn001_frame01.nii.gz";
  struct stat st;
  ASSERT_EQ(::stat(image.c_str(), &st), 0);
  const std::string original = ReadBytes(image);
  WriteText(image, std::string(original.size(), 'x'));
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, image.c_str(), times, 0), 0);
  GCL_ASSERT_OK_AND_ASSIGN(Dataset cached, LoadDataset(o));
  ExpectDatasetsEqual(first, cached);
  // A changed mtime changes the key: the garbage is decoded and reported.
  times[1].tv_sec += 10;
  ASSERT_EQ(::utimensat(AT_FDCWD, image.c_str(), times, 0), 0);
  EXPECT_THAT(LoadDataset(o), StatusIs(absl::StatusCode::kInvalidArgument, image.string()));
  // Restore the content and the original mtime.
  WriteText(image, original);
  times[1] = st.st_mtim;
  ASSERT_EQ(::utimensat(AT_FDCWD, image.c_str(), times, 0), 0);

  // A corrupt entry is ignored and rebuilt.
  std::string entry = ReadBytes(entries[0]);
  entry[entry.size() / 2] ^= 0x5a;
  WriteText(entries[0], entry);
  EXPECT_THAT(LoadDatasetCache(entries[0].string()), StatusIs(absl::StatusCode::kDataLoss, "checksum"));
  GCL_ASSERT_OK_AND_ASSIGN(Dataset rebuilt, LoadDataset(o));
  ExpectDatasetsEqual(first, rebuilt);
  GCL_EXPECT_OK(LoadDatasetCache(entries[0].string()));
  WriteText(entries[0], "GCLCACHE 1\nshort");
  GCL_ASSERT_OK_AND_ASSIGN(Dataset rebuilt2, LoadDataset(o));
  ExpectDatasetsEqual(first, rebuilt2);

  // A different image_size is a different entry.
  o.image_size = 8;
  GCL_ASSERT_OK(LoadDataset(o));
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(o.cache_dir)) ++n;
  EXPECT_EQ(n, 2u);
}

TEST(SliceCacheTest, AcdcCacheHitEqualsDecode) {
  SKIP_WITHOUT_SHARED_DATA();
  TempDir tmp;
  MakeAcdcRoot(tmp.path() / "acdc", "patient003_frame02\n", "patient001_frame02\n", "patient002_frame01\n");
  DatasetOptions o;
  o.format = "acdc-h5";
  o.path = (tmp.path() / "acdc").string();
  o.image_size = 32;
  GCL_ASSERT_OK_AND_ASSIGN(Dataset plain, LoadDataset(o));
  o.cache_dir = (tmp.path() / "cache").string();
  GCL_ASSERT_OK_AND_ASSIGN(Dataset first, LoadDataset(o));
  GCL_ASSERT_OK_AND_ASSIGN(Dataset second, LoadDataset(o));
  ExpectDatasetsEqual(plain, first);
  ExpectDatasetsEqual(plain, second);
  // Changing a list changes the key.
  WriteText(tmp.path() / "acdc" / "val.list", "patient001_frame01\n");
  GCL_ASSERT_OK_AND_ASSIGN(Dataset other, LoadDataset(o));
  EXPECT_EQ(other.val[0].id, "patient001_frame01");
}

}  // namespace
}  // namespace gcl::core
