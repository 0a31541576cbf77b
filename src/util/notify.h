/* The systemd notification protocol (Type=notify) without libsystemd: one
 * datagram to $NOTIFY_SOCKET.  Main thread only. */
#ifndef QTAP_UTIL_NOTIFY_H
#define QTAP_UTIL_NOTIFY_H

/* Sends state ("READY=1", "RELOADING=1", "STOPPING=1", "STATUS=...").
 * 0 when sent or when not run under a service manager, else -errno. */
int notify_send(const char *state);

#endif
