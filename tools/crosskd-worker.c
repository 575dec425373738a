#include <stdio.h>
int main(void) { puts("crosskd-worker " KD_VERSION); return 0; }
