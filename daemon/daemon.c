/* daemon.c — placeholder for the coordinator on rank 0. */
#include "proto/status.h"
