// ablation.cpp — the rows of the paper's ablation tables, as fusedkd options.
#include "ablation.hpp"

namespace trainer {

namespace {

using NT = fusedkd::NkdNonTarget;
using ST = fusedkd::UskdSoftTarget;
using R = fusedkd::UskdRank;

AblationRow ce(const std::string& paper) {
  AblationRow r;
  r.name = "Baseline (CE)";
  r.method = Method::kCE;
  r.paper = paper;
  return r;
}

AblationRow nkd(const std::string& name, bool target, NT non_target, bool t2,
                const std::string& paper) {
  AblationRow r;
  r.name = name;
  r.method = Method::kNKD;
  r.nkd.target = target;
  r.nkd.non_target = non_target;
  r.nkd.t2 = t2;
  r.paper = paper;
  return r;
}

/// A USKD row: the CIFAR-100 preset with the given changes.
AblationRow uskd(const std::string& name, const std::string& paper) {
  AblationRow r;
  r.name = name;
  r.method = Method::kUSKD;
  r.paper = paper;
  return r;
}

}  // namespace

std::vector<std::string> ablation_ids() { return {"5", "6", "8", "9", "12", "14", "15"}; }

bool needs_teacher(const AblationTable& t) {
  for (const AblationRow& r : t.rows) {
    if (r.method == Method::kNKD && !r.self_teacher) return true;
  }
  return false;
}

bool ablation_table(const std::string& id, AblationTable* t) {
  *t = AblationTable();
  t->id = id;
  if (id == "5") {
    t->title = "NKD: the normalized non-target term against KD's";
    t->paper_model = "ResNet-34 -> ResNet-18";
    t->rows = {ce("69.90"),
               nkd("Target (T1) only", true, NT::kNone, false, "71.06"),
               nkd("Target + KD's non-target", true, NT::kPlain, false, "71.33"),
               nkd("Target + NKD's non-target (NKD)", true, NT::kNormalized, false, "71.96")};
  } else if (id == "14") {
    t->title = "NKD: the target term T1 and DKD's coefficient term T2";
    t->paper_model = "ResNet-34 -> ResNet-18";
    t->rows = {ce("69.90"),
               nkd("T1 (NKD)", true, NT::kNormalized, false, "71.96"),
               nkd("T2", false, NT::kNormalized, true, "70.91"),
               nkd("T1+T2 (DKD's target part)", true, NT::kNormalized, true, "71.70")};
  } else if (id == "6") {
    t->title = "USKD: the target and the non-target term";
    t->paper_model = "MobileNet / RegNetX-1.6GF";
    AblationRow a = uskd("Target only", "70.18 / 76.87");
    a.uskd.non_target = false;
    AblationRow b = uskd("Non-target only", "69.43 / 77.25");
    b.uskd.target = false;
    t->rows = {ce("69.21 / 76.84"), a, b, uskd("Target + non-target (USKD)", "70.38 / 77.30")};
  } else if (id == "8") {
    t->title = "USKD: smoothing of the soft target label (target term only, no square)";
    t->paper_model = "ResNet-18";
    t->rows = {ce("69.90")};
    const struct {
      const char* name;
      ST mode;
      const char* paper;
    } modes[] = {{"S_t + V_t - mean(S_t)", ST::kMeanShift, "70.76"},
                 {"softmax(S_t) * sum(V_t)", ST::kSoftmax, "70.57"},
                 {"sqrt(S_t - min(S_t))", ST::kSqrtMin, "70.57"},
                 {"S_t / max(S_t)", ST::kMaxNorm, "70.53"},
                 {"S_t / mean(S_t)", ST::kMeanNorm, "70.50"}};
    for (const auto& m : modes) {
      AblationRow r = uskd(m.name, m.paper);
      r.uskd.non_target = false;
      r.uskd.square = false;
      r.uskd.soft_target = m.mode;
      t->rows.push_back(r);
    }
    AblationRow trained = nkd("Trained model's T_t (NKD target term)", true, NT::kNone, false, "70.75");
    trained.self_teacher = true;
    t->rows.push_back(trained);
    t->note =
        "The paper's last row uses a trained ResNet-18 (the student's own architecture) as the "
        "source of T_t; here a CE-trained student of the same architecture (seed 0).";
  } else if (id == "9") {
    t->title = "USKD: the rank of the soft non-target labels";
    t->paper_model = "ResNet-18 / RegNetX-1.6GF";
    t->rows = {ce("69.90 / 76.84")};
    const struct {
      const char* name;
      R rank;
      const char* paper;
    } ranks[] = {{"Weak logit", R::kWeak, "70.65 / 77.28"},
                 {"Final logit", R::kFinal, "70.72 / 77.15"},
                 {"Combination", R::kCombination, "70.71 / 77.25"},
                 {"Normalization (Eq. 10)", R::kPaper, "70.79 / 77.30"},
                 {"Released code's rank (log S)", R::kReference, "-"}};
    for (const auto& k : ranks) {
      AblationRow r = uskd(k.name, k.paper);
      r.uskd.rank = k.rank;
      t->rows.push_back(r);
    }
  } else if (id == "12") {
    t->title = "USKD: the square of S_t in the soft target";
    t->paper_model = "MobileNet / RegNetX-1.6GF";
    AblationRow a = uskd("w/o square", "70.04 / 76.79");
    a.uskd.square = false;
    t->rows = {ce("69.21 / 76.84"), a, uskd("with square (USKD)", "70.18 / 76.87")};
  } else if (id == "15") {
    t->title = "USKD: T1 and T2 with USKD's soft labels (S1)";
    t->paper_model = "ResNet-18";
    AblationRow t2 = uskd("T2 (S1)", "69.50");
    t2.uskd.target = false;
    t2.uskd.t2 = true;
    AblationRow both = uskd("T1+T2 (S1)", "70.22");
    both.uskd.t2 = true;
    t->rows = {ce("69.90"), uskd("T1 (S1) (USKD)", "70.79"), t2, both};
    t->note =
        "The paper's last column, T1 with EMA soft labels (S2, 70.36), needs an EMA copy of the "
        "model as a teacher; it is not a loss option and is not rerun.";
  } else {
    return false;
  }
  return true;
}

}  // namespace trainer
