/* placeholder replaced by the executor test stages */
int main(void) { return 0; }
