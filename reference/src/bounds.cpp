#include "attnscope/reference/bounds.hpp"
