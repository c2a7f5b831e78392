// The registry container: registration, look-up and selection by name. attnscope's own
// implementations are added on first use (attnscope_implementations.cpp).
#include "attnscope/kernels/registry.hpp"

#include <fnmatch.h>

#include <deque>
#include <mutex>
#include <stdexcept>

#include "stage_kernels.hpp"

namespace attnscope::gpu {

namespace {

struct Registry {
  std::mutex mutex;
  std::deque<Implementation> items;  // a deque: references stay valid as it grows
};

void check_new(const Implementation& impl, const std::deque<Implementation>& items) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument("cannot register implementation '" + impl.name + "': " + why);
  };
  if (impl.name.empty()) fail("the name is empty");
  if (impl.family.empty()) fail("the family is empty");
  if (impl.path == Path::unfused)
    fail("unfused is not an implementation's path: register the family's qk, softmax and pv");
  if (!impl.launch) fail("no launch function");
  if (impl.name == unfused_name(impl.family))
    fail("the name is reserved for the family's unfused path");
  for (const Implementation& i : items)
    if (i.name == impl.name) fail("the name is taken");
}

Registry& registry() {
  static Registry r;
  static std::once_flag own;
  std::call_once(own, [] {
    for (Implementation& i : detail::attnscope_implementations()) {
      check_new(i, r.items);
      r.items.push_back(std::move(i));
    }
  });
  return r;
}

}  // namespace

std::string Implementation::why_unsupported(const Problem& p, const KvLayoutSpec& layout) const {
  try {
    p.validate();
    layout.validate(p);
  } catch (const std::exception& e) {
    return e.what();
  }
  if (p.kv_fp8 && !takes_fp8_cache)
    return name + " does not read fp8 KV caches (takes_fp8_cache is not set)";
  if (p.latent && !takes_latent_cache)
    return name + " does not read latent (MLA) caches (takes_latent_cache is not set)";
  return unsupported_reason ? unsupported_reason(p, layout) : std::string();
}

std::size_t Implementation::workspace(const Problem& p, const LaunchContext& c) const {
  return workspace_bytes ? workspace_bytes(p, c) : 0;
}

KernelOrder Implementation::order(const Problem& p, const LaunchContext& c) const {
  if (summation_order) return summation_order(p, c);
  KernelOrder o;
  if (path == Path::qk || is_single_pass(path)) o.dot = SummationOrder{};
  if (path != Path::qk) o.values = SummationOrder{};
  return o;
}

std::vector<const Implementation*> implementations() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<const Implementation*> out;
  for (const Implementation& i : r.items) out.push_back(&i);
  return out;
}

std::vector<const Implementation*> implementations(Path path) {
  std::vector<const Implementation*> out;
  for (const Implementation* i : implementations())
    if (i->path == path) out.push_back(i);
  return out;
}

const Implementation& register_implementation(Implementation impl) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  check_new(impl, r.items);
  r.items.push_back(std::move(impl));
  return r.items.back();
}

const Implementation* find_implementation(std::string_view name) {
  for (const Implementation* i : implementations())
    if (i->name == name) return i;
  return nullptr;
}

const Implementation& implementation(std::string_view name) {
  if (const Implementation* i = find_implementation(name)) return *i;
  std::string known;
  for (const Implementation* i : implementations()) known += (known.empty() ? "" : ", ") + i->name;
  throw std::invalid_argument("no implementation named '" + std::string(name) +
                              "' is registered (registered: " + known + ")");
}

const Implementation* family_stage(std::string_view family, Path stage) {
  for (const Implementation* i : implementations())
    if (i->family == family && i->path == stage) return i;
  return nullptr;
}

std::vector<std::string> unfused_families() {
  std::vector<std::string> out;
  for (const Implementation* i : implementations(Path::qk))
    if (family_stage(i->family, Path::softmax) && family_stage(i->family, Path::pv)) {
      bool seen = false;
      for (const std::string& f : out) seen = seen || f == i->family;
      if (!seen) out.push_back(i->family);
    }
  return out;
}

std::string unfused_name(std::string_view family) {
  return std::string(family) + ".unfused";
}

NameFilter::NameFilter(std::string_view patterns) {
  if (patterns.empty()) return;
  std::size_t at = 0;
  while (true) {
    const std::size_t comma = std::min(patterns.find(',', at), patterns.size());
    std::string p(patterns.substr(at, comma - at));
    if (p.empty())
      throw std::invalid_argument("empty pattern in the implementation filter '" +
                                  std::string(patterns) + "'");
    patterns_.push_back(std::move(p));
    if (comma == patterns.size()) break;
    at = comma + 1;
  }
}

bool NameFilter::matches(std::string_view name) const {
  if (patterns_.empty()) return true;
  const std::string n(name);
  for (const std::string& p : patterns_)
    if (fnmatch(p.c_str(), n.c_str(), 0) == 0) return true;
  return false;
}

}  // namespace attnscope::gpu
