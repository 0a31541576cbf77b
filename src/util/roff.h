/* Text written into man pages by the documentation generators. */
#ifndef QTAP_UTIL_ROFF_H
#define QTAP_UTIL_ROFF_H

#include <stdio.h>

/* Writes s as roff running text: backslashes as \e, hyphens as \- (so they
 * render and search as minus signs), and a leading dot or quote protected
 * so that the line cannot start a request. */
void roff_puts(FILE *out, const char *s);

#endif
