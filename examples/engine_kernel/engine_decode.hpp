// myengine's decode attention, as attnscope sees it: one registration call.
#pragma once

namespace myengine {

// Registers "myengine.decode" (family "myengine", a fused path) with attnscope. With
// plant_layer0_bug the kernel reads layer 0 of the KV cache whatever layer it is asked for.
void register_kernels(bool plant_layer0_bug);

}  // namespace myengine
