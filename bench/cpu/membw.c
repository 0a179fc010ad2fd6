/* Read bandwidth of main memory: the sum of a large buffer of doubles with T OpenMP threads, best of P passes.
 *
 *   gcc -O3 -march=native -fopenmp -o membw bench/cpu/membw.c
 *   ./membw [threads (0: OpenMP default)] [MiB (1024)] [passes (7)]
 *
 * Prints one line: "membw threads=T mib=M passes=P best_gbps=X median_gbps=Y" (GB = 1e9 bytes).
 * Each thread first-touches the part it later reads, so pages sit on its node. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    long mib = argc > 2 ? atol(argv[2]) : 1024;
    int passes = argc > 3 ? atoi(argv[3]) : 7;
    if (threads > 0) omp_set_num_threads(threads);
    if (mib < 1 || passes < 1) {
        fprintf(stderr, "usage: %s [threads] [MiB >= 1] [passes >= 1]\n", argv[0]);
        return 2;
    }
    long n = mib * 1024 * 1024 / (long)sizeof(double);
    double *a = NULL;
    if (posix_memalign((void **)&a, 4096, (size_t)n * sizeof(double)) != 0) {
        fprintf(stderr, "membw: cannot allocate %ld MiB\n", mib);
        return 1;
    }
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) a[i] = (double)(i & 1023) * 1e-3;

    double *gbps = malloc(sizeof(double) * (size_t)passes);
    double check = 0;
    for (int p = 0; p < passes + 1; p++) { /* pass 0 warms up */
        double sum = 0, t0 = omp_get_wtime();
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
        for (long i = 0; i < n; i++) sum += a[i];
        double dt = omp_get_wtime() - t0;
        check += sum;
        if (p > 0) gbps[p - 1] = (double)n * sizeof(double) / dt / 1e9;
    }
    qsort(gbps, (size_t)passes, sizeof(double), cmp);
    int used = 0;
#pragma omp parallel
#pragma omp single
    used = omp_get_num_threads();
    printf("membw threads=%d mib=%ld passes=%d best_gbps=%.2f median_gbps=%.2f\n", used, mib, passes,
           gbps[passes - 1], gbps[passes / 2]);
    if (check == 42.0) printf("\n"); /* keeps the sums alive */
    free(gbps);
    free(a);
    return 0;
}
