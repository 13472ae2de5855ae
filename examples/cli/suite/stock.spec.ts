import { test, expect } from '@playwright/test';

test('three items are in stock', async ({ request }) => {
  const res = await request.get(`${process.env.TARGET_URL}/api.json`);
  expect((await res.json()).items).toBe(3);
});
