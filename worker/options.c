/* options.c — placeholder while the option table is being written. */
#include "proto/status.h"
