/* cmd_report.c - sqz report RESULT.json... -o report.html: the --json results of sqz commands
 * as one self-contained HTML page of plots and tables (report.h), and the models' numbers as a
 * table on stdout (--json: what was written, as one object). */
#include "cli.h"
#include "report.h"

int cmd_report(sqz_ctx *ctx, const opts *o) {
    (void)ctx;
    if (!o->n_inputs) return cli_die("report needs RESULT.json files (the --json output of sqz commands)");
    if (!o->out) return cli_die("report needs an output file: -o report.html");
    rp_data d;
    if (rp_load(&d, o->inputs, o->n_inputs)) {
        rp_free(&d);
        return 1;
    }
    if (!d.n_models && !d.n_kvs && !d.n_speeds) {
        rp_free(&d);
        return cli_die("report: no results in the inputs");
    }
    int rc = rp_write_html(&d, o->out);
    if (!rc && o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddNumberToObject(j, "models", d.n_models);
        cJSON_AddNumberToObject(j, "kv_policies", d.n_kvs);
        cJSON_AddNumberToObject(j, "speeds", d.n_speeds);
        cli_print_json(j);
    } else if (!rc) {
        rp_print_table(stdout, &d);
        fprintf(stderr, "sqz: wrote %s\n", o->out);
    }
    rp_free(&d);
    return rc;
}
