// ablation.hpp — the paper's ablation tables (Tables 5, 6, 8, 9, 12, 14, 15) as lists of
// trainer runs: each row is a method with a variant of its fusedkd options, beside the paper's
// ImageNet top-1 accuracy for the same row.
#pragma once

#include <string>
#include <vector>

#include "train.hpp"

namespace trainer {

/// One row of an ablation table.
struct AblationRow {
  std::string name;   ///< the paper's name of the row
  Method method = Method::kCE;
  fusedkd::NkdOptions nkd = fusedkd::NkdOptions::cifar100();
  fusedkd::UskdOptions uskd = fusedkd::UskdOptions::cifar100();
  std::string paper;  ///< the paper's ImageNet top-1 (%) for the row, "-" when it has none
  /// Table 8's "trained ResNet-18": NKD's target term with the soft target of a trained model of
  /// the student's own architecture (a CE student) instead of the big teacher.
  bool self_teacher = false;
};

struct AblationTable {
  std::string id;           ///< "5", "6", ...
  std::string title;        ///< what the table compares
  std::string paper_model;  ///< the paper's model(s) for the paper column
  std::vector<AblationRow> rows;  ///< rows[0] is the baseline (CE)
  std::string note;         ///< what of the paper's table is not rerun, and why
};

/// The table `id` ("5", "6", "8", "9", "12", "14", "15"). Returns false for another id.
bool ablation_table(const std::string& id, AblationTable* table);

/// The ids of every table, in the paper's order.
std::vector<std::string> ablation_ids();

/// Whether any row of the table needs the big teacher's logits.
bool needs_teacher(const AblationTable& t);

}  // namespace trainer
