/* test_calib_spread.c - calibration windows are spread over the whole token stream. */
#include <stdlib.h>

#include "sqz.h"
#include "test.h"

int main(void) {
    enum { N = 1000 };
    int32_t t[N], out[N];
    for (int i = 0; i < N; i++) t[i] = i;
    size_t n = sqz_calib_spread(t, N, 300, 100, out);
    CHECK(n == 300, "3 windows of 100 (got %zu tokens)", n);
    CHECK(out[0] == 0 && out[99] == 99, "the first window starts the text");
    CHECK(out[100] == 450 && out[199] == 549, "the second is in the middle (starts at %d)", out[100]);
    CHECK(out[200] == 900 && out[299] == 999, "the last ends the text (starts at %d)", out[200]);
    n = sqz_calib_spread(t, N, 5000, 100, out);
    CHECK(n == N && out[999] == 999 && out[500] == 500, "asking for more than there is: all of it, in order");
    CHECK(sqz_calib_spread(t, 50, 300, 100, out) == 0, "fewer tokens than a window: none");
    CHECK(sqz_calib_spread(t, N, 99, 100, out) == 0, "less than a window asked: none");
    n = sqz_calib_spread(t, N, 100, 100, out);
    CHECK(n == 100 && out[0] == 0, "one window: the start");
    return test_done();
}
