#include "attnscope/reference/precision_model.hpp"
