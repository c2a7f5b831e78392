// The accuracy suite as a library entry point: a program that registers its own implementations
// (gpu::register_implementation) and then calls accuracy_main gets attnscope's whole accuracy
// gate over them, with the same cases, budgets, JSONL records and GoogleTest output as
// attnscope's own accuracy_suite binary.
#pragma once

namespace attnscope {

// Runs every accuracy case of the registered implementations. Takes GoogleTest's flags and:
//   --attnscope_impl=GLOB[,GLOB...]  (ATTNSCOPE_ACCURACY_IMPL) implementations to gate, by name,
//                                    "<family>.unfused" for a family's unfused path; default all
//   --attnscope_sweep=default|full   (ATTNSCOPE_ACCURACY_SWEEP) the case set; default: default
//   --attnscope_jsonl=PATH           (ATTNSCOPE_ACCURACY_JSONL) records appended here; default
//                                    accuracy.jsonl
//   --attnscope_trace_dir=DIR        (ATTNSCOPE_ACCURACY_TRACE_DIR) also write each case's inputs
//                                    and the GPU's outputs as an engine trace point
//                                    (DIR/<case>.safetensors) for `attnscope trace check`
// Returns 0 when every case ran within its budget (or skipped: no GPU), 1 when one failed, 2
// for a bad flag or a filter that selects nothing.
int accuracy_main(int argc, char** argv);

}  // namespace attnscope
