/* The exec'd server of benches/compare.sh: writes one line to fd 1 and exits.
 * Built static (-O2 -static) so exec cost is the kernel's, not the dynamic loader's. */
#include <unistd.h>

int main(void)
{
	static const char line[] = "hello\n";
	(void)write(1, line, sizeof line - 1);
	_exit(0);
}
