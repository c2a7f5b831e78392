#!/usr/bin/env bash
# Formats the C++, CUDA/HIP sources with clang-format (style: .clang-format), or with --check
# lists the files that differ from it and exits 1 (CI runs the check).
set -euo pipefail
cd "$(dirname "$0")/.."
cf="${CLANG_FORMAT:-}"
if [[ -z "$cf" ]]; then
  for c in clang-format-14 clang-format; do command -v "$c" >/dev/null && { cf="$c"; break; }; done
fi
[[ -n "$cf" ]] || { echo "format.sh: clang-format not found (Debian: apt-get install clang-format-14)" >&2; exit 2; }
check=0
[[ "${1:-}" == "--check" ]] && check=1
bad=0
while IFS= read -r f; do
  # .hip files are C++ with kernel launches; clang-format knows them by a C++ name.
  if (( check )); then
    if ! "$cf" --dry-run -Werror --assume-filename="${f%.hip}.cpp" < "$f" >/dev/null 2>&1; then
      echo "format.sh: $f differs from .clang-format ($cf)"
      bad=$((bad + 1))
    fi
  else
    "$cf" -i --assume-filename="${f%.hip}.cpp" "$f"
  fi
done < <(git ls-files '*.cpp' '*.hpp' '*.hip' '*.h')
if (( check )); then
  (( bad == 0 )) || { echo "format.sh: $bad files differ; run: bash tools/format.sh" >&2; exit 1; }
  echo "format.sh: every source matches .clang-format ($("$cf" --version | head -1))"
fi
