#include "attnscope/core/records.hpp"

#include <cmath>
#include <stdexcept>

namespace attnscope {

nlohmann::json json_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

namespace {
nlohmann::json number(double v) {
  return json_number(v);
}
}  // namespace

nlohmann::json to_json(const Problem& p) {
  nlohmann::json j = {{"batch", p.batch},
                      {"q_heads", p.q_heads},
                      {"kv_heads", p.kv_heads},
                      {"group", p.group()},
                      {"q_len", p.q_len},
                      {"seq_len", p.seq_len},
                      {"window", p.window},
                      {"head_dim", p.head_dim},
                      {"scale", p.effective_scale()},
                      {"input", to_string(p.input)},
                      {"accumulation", to_string(p.accum)},
                      {"output", to_string(p.output)}};
  if (p.kv_fp8) {
    j["kv_format"] = to_string(*p.kv_fp8);
    j["kv_scale"] = to_string(p.kv_scale);
  }
  if (p.latent) {
    j["v_dim"] = p.value_dim();
    j["latent"] = true;
  }
  return j;
}

nlohmann::json to_json(const KvLayoutSpec& l) {
  nlohmann::json j = {{"layout", to_string(l.kind)}, {"layers", l.layers}, {"layer", l.layer}};
  if (l.kind == KvLayoutKind::paged) j["page_size"] = l.page_size;
  if (l.seq_capacity != 0) j["seq_capacity"] = l.seq_capacity;
  return j;
}

nlohmann::json to_json(const DataSpec& d) {
  return {{"distribution", to_string(d.dist)},  {"seed", d.seed},
          {"mask_fraction", d.mask_fraction},   {"left_padding", d.left_padding},
          {"fully_masked", d.fully_masked},     {"ragged_min_len", d.ragged_min_len},
          {"poison_outside", d.poison_outside}, {"nan_in_window", d.nan_in_window},
          {"nan_in_key", d.nan_in_key},         {"q_spread", d.q_spread}};
}

void add_metrics(nlohmann::json& j, const Metrics& m, const std::string& prefix) {
  j[prefix + "mae"] = number(m.mae);
  j[prefix + "max_abs"] = number(m.max_abs);
  j[prefix + "max_diff"] = number(m.max_abs);  // the name engines use in their traces
  j[prefix + "max_rel"] = number(m.max_rel);
  j[prefix + "rel_l2"] = number(m.rel_l2);
  j[prefix + "max_ulp"] = number(m.max_ulp);
  j[prefix + "nan_count"] = m.nan_count;
  j[prefix + "inf_count"] = m.inf_count;
  j[prefix + "nan_lost"] = m.nan_lost;
  j[prefix + "worst_index"] = m.worst_index;
}

nlohmann::json to_json(const Metrics& m, const std::string& prefix) {
  nlohmann::json j = nlohmann::json::object();
  add_metrics(j, m, prefix);
  j[prefix + "count"] = m.count;
  return j;
}

JsonlWriter::JsonlWriter(const std::string& path, bool append)
    : path_(path), out_(path, append ? std::ios::app : std::ios::trunc) {
  if (!out_) throw std::runtime_error("cannot open '" + path + "' for writing");
}

void JsonlWriter::write(const nlohmann::json& record) {
  std::lock_guard<std::mutex> lock(mu_);
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) throw std::runtime_error("write to '" + path_ + "' failed");
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open '" + path + "' for reading");
  std::vector<nlohmann::json> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      nlohmann::json j = nlohmann::json::parse(line);
      if (!j.is_object()) throw std::runtime_error("not a JSON object");
      out.push_back(std::move(j));
    } catch (const std::exception& e) {
      throw std::runtime_error(path + ":" + std::to_string(n) + ": bad record: " + e.what());
    }
  }
  // A directory opens as a stream but fails on the first read: not an empty file.
  if (in.bad()) throw std::runtime_error("cannot read '" + path + "'");
  return out;
}

}  // namespace attnscope
