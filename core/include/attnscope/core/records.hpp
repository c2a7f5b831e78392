// JSON and JSON Lines records of results.
#pragma once

#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attnscope/core/inputs.hpp"
#include "attnscope/core/layout.hpp"
#include "attnscope/core/metrics.hpp"
#include "attnscope/core/problem.hpp"

namespace attnscope {

// JSON has no NaN or Inf: such values are written as the strings "nan", "inf" and "-inf", so
// nothing is lost silently.
nlohmann::json json_number(double v);

nlohmann::json to_json(const Problem& p);
nlohmann::json to_json(const KvLayoutSpec& l);
nlohmann::json to_json(const DataSpec& d);
// Metrics as {prefix}mae, {prefix}max_abs, ...; with prefix "attn_out_" this also writes the
// engine-trace names attn_out_mae and attn_out_max_diff.
nlohmann::json to_json(const Metrics& m, const std::string& prefix = "");
void add_metrics(nlohmann::json& j, const Metrics& m, const std::string& prefix);

// Appends one compact JSON object per line; thread-safe; throws if the file cannot be written.
class JsonlWriter {
 public:
  explicit JsonlWriter(const std::string& path, bool append = true);
  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
  std::mutex mu_;
};

// Reads a JSON Lines file; throws std::runtime_error naming the file and line of a bad record.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

}  // namespace attnscope
