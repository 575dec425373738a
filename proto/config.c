/* config.c — placeholder while the config parser is being written. */
#include "proto/status.h"
