// bench/flags.hpp — the small parsing helpers both benchmark programs use for their
// --fusedkd_* flags (the rest of argv goes to Google Benchmark).
#pragma once

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

namespace bench_flags {

/// "a,b,,c" -> {"a", "b", "c"}.
inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

/// If arg is "NAME=VALUE", stores VALUE and returns true.
inline bool take(const std::string& arg, const char* name, std::string* value) {
  const std::string prefix = std::string(name) + "=";
  if (arg.compare(0, prefix.size(), prefix) != 0) return false;
  *value = arg.substr(prefix.size());
  return true;
}

/// An empty list selects everything.
inline bool listed(const std::vector<std::string>& list, const std::string& x) {
  return list.empty() || std::find(list.begin(), list.end(), x) != list.end();
}

}  // namespace bench_flags
