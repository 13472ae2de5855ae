// A Playwright spec for `supercheck run` (the demo site: make demo serves it on 127.0.0.1:18090):
//   supercheck run examples/cli/shop.spec.ts --env TARGET_URL=http://127.0.0.1:18090 --wait
import { test, expect } from '@playwright/test';

test('home page has a title', async ({ page }) => {
  await page.goto(process.env.TARGET_URL + '/');
  await expect(page).toHaveTitle(/Demo Shop/);
});

test('adding to the basket updates the status', async ({ page }) => {
  await page.goto(process.env.TARGET_URL + '/');
  await page.click('#add');
  await expect(page.locator('#status')).toHaveText('1 item in your basket.');
});
