#include "cli/commands.h"
int cli_predict_main(dist_world *w, int argc, char **argv)
{
    return 1;
}
