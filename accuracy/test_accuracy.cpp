// attnscope's accuracy suite: every registered implementation against the high-precision
// reference (see attnscope/accuracy/suite.hpp for the flags). Without a GPU every case skips,
// saying why.
#include "attnscope/accuracy/suite.hpp"

int main(int argc, char** argv) {
  return attnscope::accuracy_main(argc, argv);
}
