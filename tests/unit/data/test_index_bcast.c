/* test_index_bcast.c — under mpirun -np N: rank 0 parses the hand-made COCO file, every
 * rank receives an identical, validated index; a missing file makes every rank return an
 * error (nobody hangs). Each rank's expectations are summed with MPI_Allreduce.
 * Usage: mpirun -np N test_index_bcast FIXTURE_DIR */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "kd_test.h"
#include "worker/data/coco_index_mpi.h"

static const char *g_dir;

static void test_bcast(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/coco/good.json", g_dir);
    kd_coco_index_opts o;
    kd_coco_index_opts_defaults(&o);
    kd_coco_index x;
    kd_err e = {0};
    KD_REQUIRE(kd_coco_index_load_bcast(p, "none", &o, MPI_COMM_WORLD, 0, &x, NULL, &e) == KD_OK);
    KD_EXPECT(x.n_images == 3 && x.n_boxes == 5 && x.n_classes == 3 && x.cat_ids[2] == 12);
    KD_EXPECT(!strcmp(kd_coco_index_file_name(&x, 0), "000040.jpg") && x.boxes[2] == 110.5f);
    /* identical bytes everywhere: compare a checksum with rank 0's */
    uint64_t h = 1469598103934665603ull, h0;
    for (size_t i = 0; i < x.blob_bytes; i++) h = (h ^ ((unsigned char *)x.blob)[i]) * 1099511628211ull;
    h0 = h;
    MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    KD_EXPECT(h == h0);
    kd_coco_index_free(&x);
}

static void test_missing(void)
{
    kd_coco_index_opts o;
    kd_coco_index_opts_defaults(&o);
    kd_coco_index x;
    kd_err e = {0};
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    /* the root is the last rank this time */
    KD_EXPECT(kd_coco_index_load_bcast("no/such/instances.json", "none", &o, MPI_COMM_WORLD, size - 1, &x, NULL, &e) ==
              KD_ENOTFOUND);
    KD_EXPECT_STR_CONTAINS(e.msg, "no/such/instances.json");
    KD_EXPECT(x.blob == NULL);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (argc < 2) return 2;
    g_dir = argv[1];
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    KD_TEST_RUN(test_bcast);
    KD_TEST_RUN(test_missing);
    int local = kd_test_failures_, total = 0;
    MPI_Allreduce(&local, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int rc = kd_test_summary();
    MPI_Finalize();
    return total ? 1 : rc;
}
