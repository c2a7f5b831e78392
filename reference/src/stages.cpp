#include "attnscope/reference/stages.hpp"
