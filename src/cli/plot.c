#include "cli/commands.h"
int cli_plot_main(int argc, char **argv)
{
    return 1;
}
