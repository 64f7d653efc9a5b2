/*
 * cli/main.c: the multiflow command: dispatches to one verb_<name>.c per verb.
 */
#include <stdio.h>
#include <string.h>

#include "cli/prune_cli.h"

static const char usage[] =
    "usage: multiflow <verb> [options]\n"
    "\n"
    "verbs:\n"
    "  inspect   layout, towers, configuration, tensors, parameter counts and sparsity of a checkpoint\n"
    "  score     ITC / ITM / decoder-NLL scores of image-caption pairs\n"
    "  eval      zero-shot evaluation: 'eval retrieval' (image<->text recall@1/5/10)\n"
    "  prune     prune once: sparse checkpoints per method and sparsity, reports, a plot\n"
    "  apply     apply masks made elsewhere to a checkpoint\n"
    "  stats     calibration statistics only, or merge two statistics files\n"
    "  grad      gradients of BLIP's pretraining losses (itc, itm, lm) for every prunable tensor\n"
    "  finetune  masked fine-tuning (ITC+ITM, AdamW) of a pruned checkpoint: a new checkpoint directory\n"
    "  world     a deterministic image-caption-question world (PNG scenes, captions, questions, vocab.txt)\n"
    "  init      a randomly initialised BLIP (original layout, BLIP's init rules) from an architecture JSON\n"
    "\n"
    "'multiflow <verb> --help' describes a verb's options.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(verb, "--version") == 0) {
        puts("multiflow 0.1.0");
        return 0;
    }
    if (strcmp(verb, "inspect") == 0)
        return verb_inspect(argc - 1, argv + 1);
    if (strcmp(verb, "score") == 0)
        return verb_score(argc - 1, argv + 1);
    if (strcmp(verb, "eval") == 0)
        return verb_eval(argc - 1, argv + 1);
    if (strcmp(verb, "prune") == 0)
        return verb_prune(argc - 1, argv + 1);
    if (strcmp(verb, "apply") == 0)
        return verb_apply(argc - 1, argv + 1);
    if (strcmp(verb, "stats") == 0)
        return verb_stats(argc - 1, argv + 1);
    if (strcmp(verb, "grad") == 0)
        return verb_grad(argc - 1, argv + 1);
    if (strcmp(verb, "finetune") == 0)
        return verb_finetune(argc - 1, argv + 1);
    if (strcmp(verb, "world") == 0)
        return verb_world(argc - 1, argv + 1);
    if (strcmp(verb, "init") == 0)
        return verb_init(argc - 1, argv + 1);
    fprintf(stderr, "multiflow: unknown verb '%s'\n\n%s", verb, usage);
    return 2;
}
