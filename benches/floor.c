/* The floor of benches/compare.sh: the least a spawn-per-connection superserver can do.
 *
 * usage: floor PORT SERVER [setsid|epoll]
 * Listens on 127.0.0.1:PORT; per connection: accept4, vfork, dup2 onto fds 0-2, execve
 * SERVER with an empty environment; the parent closes the connection and reaps with
 * WNOHANG (so children's times land in cutime/cstime like the other peers'). No logging,
 * no limits, no identity change. With `setsid`, the child also starts a new session
 * first, as oxinetd's, xinetd's and inetd's servers do: the same loop plus the one call
 * whose cost is the kernel's (a scheduling autogroup per session where autogroups are
 * on), shown as its own row. With `epoll`, the listener is non-blocking and the loop
 * sleeps in epoll_wait instead of accept4, as any superserver watching more than one
 * socket (and its signals) must: the cost of an event loop itself, without any of
 * oxinetd's work (floor-epoll). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int new_session = argc == 4 && strcmp(argv[3], "setsid") == 0;
	int event_loop = argc == 4 && strcmp(argv[3], "epoll") == 0;
	if (argc < 3 || argc > 4 || (argc == 4 && !new_session && !event_loop)) {
		fprintf(stderr, "usage: floor PORT SERVER [setsid|epoll]\n");
		return 2;
	}
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (event_loop ? SOCK_NONBLOCK : 0), 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1024) < 0) {
		perror("floor: listen");
		return 111;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event interest = { .events = EPOLLIN }, ready[8];
	if (event_loop && (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ls, &interest) < 0)) {
		perror("floor: epoll");
		return 111;
	}
	char *const args[] = { argv[2], NULL };
	char *const envp[] = { NULL };
	for (;;) {
		int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (event_loop && errno == EAGAIN)
				epoll_wait(ep, ready, 8, -1);
			else if (errno != EINTR && errno != ECONNABORTED)
				perror("floor: accept4");
			continue;
		}
		pid_t pid = vfork();
		if (pid == 0) {
			if (new_session)
				setsid();
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			execve(args[0], args, envp);
			_exit(127);
		}
		close(fd);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}
