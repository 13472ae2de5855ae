import { test, expect } from '@playwright/test';

test('the stock API answers', async ({ request }) => {
  const res = await request.get(`${process.env.TARGET_URL}/api.json`);
  expect(res.ok()).toBeTruthy();
  expect((await res.json()).status).toBe('ok');
});
